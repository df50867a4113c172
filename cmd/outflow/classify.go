package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/outflowmail/outflow/pkg/classify"
	"github.com/outflowmail/outflow/pkg/spameval"
)

// maxMessageFile is the largest message file `outflow classify` reads; the
// engine itself caps what it keeps, this only bounds the read.
const maxMessageFile = 64 << 20

// runClassify implements `outflow classify [FILE...]` (one JSON verdict per
// message, stdin when no file) and `outflow classify -eval DIR`.
func runClassify(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("classify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: outflow classify [FILE...]\n       outflow classify -eval DIR")
		fs.PrintDefaults()
	}
	evalDir := fs.String("eval", "", "evaluate on `DIR`/labels.tsv (file<TAB>ham|spam) and print the quality table")
	spamThreshold := fs.Float64("spam-threshold", classify.DefaultConfig().SpamThreshold, "score from which a message is spam")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := classify.DefaultConfig()
	cfg.SpamThreshold = *spamThreshold
	if cfg.SuspectThreshold > cfg.SpamThreshold {
		cfg.SuspectThreshold = cfg.SpamThreshold
	}
	e, err := classify.New(cfg)
	if err != nil {
		return err
	}
	if *evalDir != "" {
		if fs.NArg() > 0 {
			return errors.New("classify: -eval takes no FILE arguments")
		}
		return evaluateDir(ctx, e, *evalDir, cfg.SpamThreshold, stdout)
	}
	enc := json.NewEncoder(stdout)
	type line struct {
		File string `json:"file"`
		classify.Verdict
	}
	if fs.NArg() == 0 {
		msg, err := io.ReadAll(io.LimitReader(stdin, maxMessageFile))
		if err != nil {
			return fmt.Errorf("read stdin: %w", err)
		}
		v, err := e.Classify(ctx, msg)
		if err != nil {
			return err
		}
		return enc.Encode(line{File: "-", Verdict: v})
	}
	for _, name := range fs.Args() {
		msg, err := readMessage(name)
		if err != nil {
			return err
		}
		v, err := e.Classify(ctx, msg)
		if err != nil {
			return err
		}
		if err := enc.Encode(line{File: name, Verdict: v}); err != nil {
			return err
		}
	}
	return nil
}

func readMessage(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxMessageFile))
}

// evaluateDir scores every labelled file of dir and prints the quality table.
func evaluateDir(ctx context.Context, e *classify.Engine, dir string, threshold float64, stdout io.Writer) error {
	samples, err := spameval.LoadLabels(dir)
	if err != nil {
		return fmt.Errorf("classify -eval: %w", err)
	}
	scored := make([]spameval.Scored, 0, len(samples))
	for _, s := range samples {
		msg, err := readMessage(s.Path)
		if err != nil {
			return fmt.Errorf("classify -eval: %w", err)
		}
		v, err := e.Classify(ctx, msg)
		if err != nil {
			return err
		}
		scored = append(scored, spameval.Scored{Score: v.Score, Spam: s.Spam, Subset: s.Subset})
	}
	fmt.Fprintf(stdout, "%s: %d messages, model %s\n", dir, len(samples), e.Model().Version())
	return spameval.WriteTable(stdout, []spameval.Named{{Name: "Outflow", Report: spameval.Evaluate(scored, threshold)}})
}

// runClassifierTrain implements `outflow classifier train`: it trains the
// model on a labelled corpus and writes it (by default over the embedded
// model's source file, for `make model`).
func runClassifierTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("classifier train", flag.ContinueOnError)
	fs.SetOutput(stderr)
	corpus := fs.String("corpus", "../shared/corpus/spamassassin", "corpus `dir` holding labels.tsv")
	out := fs.String("out", "pkg/classify/model.bin", "model `file` to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	samples, err := spameval.LoadLabels(*corpus)
	if err != nil {
		return fmt.Errorf("classifier train: %w", err)
	}
	// Train in a fixed order whatever the order of labels.tsv, so the model
	// is reproducible.
	slices.SortFunc(samples, func(a, b spameval.Sample) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	exs := make([]classify.Example, len(samples))
	for i, s := range samples {
		msg, err := readMessage(s.Path)
		if err != nil {
			return fmt.Errorf("classifier train: %w", err)
		}
		exs[i] = classify.Example{Msg: spameval.StripArtefacts(msg), Spam: s.Spam}
	}
	m, err := classify.Train(ctx, exs, classify.TrainOptions{})
	if err != nil {
		return fmt.Errorf("classifier train: %w", err)
	}
	b, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	tmp := *out + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, *out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "trained on %d messages from %s: model %s, %d bytes, written to %s\n",
		len(exs), filepath.Clean(*corpus), m.Version(), len(b), *out)
	return nil
}
