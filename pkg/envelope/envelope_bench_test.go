package envelope

import (
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// benchEnvelope is what the router receives from the classifier: five
// recipients at three domains, a verdict with its symbols, and everything
// ingest sets. Every stage decodes one of these and most encode one.
func benchEnvelope() *Envelope {
	return &Envelope{
		ID:        "3f9c2a7be01d4c55a8e6f0b1c2d3e4f5",
		Tenant:    "acme",
		From:      "newsletter@acme.example",
		Rcpts:     []string{"alice@example.net", "bob@example.net", "carol@example.org", "dave@mail.example.com", "erin@example.org"},
		Size:      10240,
		Received:  time.Date(2026, 11, 29, 9, 30, 0, 123456789, time.UTC),
		ClientIP:  "127.0.0.1",
		AuthID:    "acme",
		MessageID: "3f9c2a7be01d4c55a8e6f0b1c2d3e4f5@submit.example",
		Verdict: &Verdict{
			Score: 12.5, Label: "clean", Fingerprint: "a1b2c3d4e5f60718", Model: "nb-2026-11-29",
			Symbols: []Symbol{
				{Name: "BAYES_LOW", Weight: -1.5}, {Name: "HTML_MESSAGE", Weight: 0.25},
				{Name: "URI_COUNT_3", Weight: 0.4}, {Name: "LIST_UNSUBSCRIBE", Weight: -0.5},
				{Name: "DKIM_ALIGNED", Weight: -0.75}, {Name: "MIME_MULTIPART_ALT", Weight: 0.1},
			},
		},
	}
}

// BenchmarkEncode measures putting an envelope into a bus message's
// headers (JSON plus two header sets), as every publish does.
func BenchmarkEncode(b *testing.B) {
	env := benchEnvelope()
	var size int
	b.ReportAllocs()
	for b.Loop() {
		m := &nats.Msg{}
		if err := Encode(m, env); err != nil {
			b.Fatal(err)
		}
		size = len(m.Header.Get(HeaderEnvelope))
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(size), "header-bytes")
}

// BenchmarkDecode measures reading the envelope back from the headers, as
// every consumer does for each message; the decoded copy must equal the
// original, so a lossy encoding fails the benchmark.
func BenchmarkDecode(b *testing.B) {
	want := benchEnvelope()
	m := &nats.Msg{}
	if err := Encode(m, want); err != nil {
		b.Fatal(err)
	}
	got, err := Decode(m.Header)
	if err != nil {
		b.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		b.Fatalf("Decode(Encode(e)) = %+v, want %+v", got, want)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(m.Header); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
