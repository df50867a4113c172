# Outflow — build, run and test. `make run` and `make test` are the README's
# first two commands; both work on a fresh Debian machine.

GO      ?= go
BIN     := bin/outflow
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# RSA DKIM signatures go through OpenSSL's libcrypto, 4x faster than Go's,
# when cgo is on and libcrypto's headers are installed (Debian: libssl-dev);
# otherwise Go signs (pkg/dkimsign/openssl.go). OPENSSL= forces Go.
OPENSSL ?= $(shell test -f /usr/include/openssl/evp.h && test "$$($(GO) env CGO_ENABLED)" = 1 && echo openssl)
comma   := ,
# Integration tests (ClickHouse, subprocesses, swaks) are behind this tag;
# `make test` always sets it.
TAGS    := integration$(if $(OPENSSL),$(comma)$(OPENSSL))
FUZZTIME ?= 10s

.PHONY: build run test unit fuzz vet eval model bench bench-micro soak clean

build:
	$(GO) build -tags '$(OPENSSL)' -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/outflow

# Starts ClickHouse (installing it from Debian if missing) with its data under
# ./.data, and runs every role in the foreground with the dev config.
run: build
	deploy/local/run.sh

# Every test: unit, integration (real NATS, ClickHouse, SMTP over sockets,
# crash and multi-process), then each fuzz target for a short time.
test: vet
	$(GO) test -tags $(TAGS) -race -shuffle=on -timeout 20m -count=1 ./...
	$(MAKE) fuzz

unit:
	$(GO) test -race ./...

vet:
	$(GO) vet -tags $(TAGS) ./...

# Every fuzz target for FUZZTIME each; scripts/fuzz.sh says how it tells a
# failing input from Go 1.26's fuzz-deadline flake.
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

# Outflow against Postfix and Postfix+OpenDKIM with smtp-source/smtp-sink
# (docs/performance.md); N, S, C, SYSTEMS override. Needs root.
bench:
	bench/run.sh

# Soak: only Outflow at half load for SOAK_SECONDS (600), goroutines, heap
# and RSS sampled into bench/out/soak.csv, first vs last minute compared
# (docs/performance.md, "Soak"); SOAK_RATE overrides the rate. Needs root.
soak:
	SOAK=1 bench/run.sh

# The go test micro-benchmarks of the hot paths (docs/performance.md,
# "Micro-benchmarks"); the integration tag brings in those that need
# ClickHouse. BENCH narrows to a -bench pattern; BENCHTIME=2s or 100x
# shortens the runs on a shared machine.
BENCH     ?= .
BENCHTIME ?= 1s
bench-micro:
	$(GO) test -tags $(TAGS) -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -benchmem ./...

clean:
	rm -rf bin .data

# Classifier quality: 5-fold cross-validation on the SpamAssassin corpus of
# Outflow and, on the same folds, SpamAssassin (Debian spamassassin, local
# tests, private Bayes per fold). CORPUS overrides the corpus directory.
CORPUS ?= ../shared/corpus/spamassassin
.PHONY: eval-classifier
eval-classifier:
	$(GO) run ./internal/tools/evalclassifier -corpus $(CORPUS)

# Rebuild the embedded classifier model (deterministic: byte-identical).
model:
	$(GO) run ./cmd/outflow classifier train -corpus $(CORPUS) -out pkg/classify/model.bin

# Feedback parsers: bounce reasons against Sisimai's labels (agreement,
# confusions) and every corpus bounce parsed. Seconds.
FEEDBACK_CORPUS ?= ../shared/corpus
.PHONY: eval-feedback
eval-feedback:
	$(GO) run ./internal/tools/evalfeedback -corpus $(FEEDBACK_CORPUS)

# Every quality evaluation on the shared corpora.
eval: eval-classifier eval-feedback
