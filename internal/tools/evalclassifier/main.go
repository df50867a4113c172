// Command evalclassifier runs k-fold cross-validation of the Outflow
// classifier on a labelled corpus and, side by side in the same run and on
// the same folds, of SpamAssassin (local tests only, Bayes trained on the
// same training folds in a private database). It prints one table with spam
// recall, ham false-positive rate, precision and recall at fixed
// false-positive rates for each system. `make eval-classifier` runs it.
//
// Both systems see the same messages, cleaned of the corpus artefacts a
// tenant's submission never has (see spameval.StripArtefacts).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/outflowmail/outflow/pkg/classify"
	"github.com/outflowmail/outflow/pkg/spameval"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "evalclassifier:", err)
		os.Exit(1)
	}
}

type options struct {
	corpus  string
	folds   int
	seed    uint64
	sa      bool
	saJobs  int
	verbose bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("evalclassifier", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	defCorpus := os.Getenv("CORPUS")
	if defCorpus == "" {
		defCorpus = "../shared/corpus/spamassassin"
	}
	fs.StringVar(&o.corpus, "corpus", defCorpus, "corpus `dir` holding labels.tsv (default $CORPUS)")
	fs.IntVar(&o.folds, "folds", 5, "number of cross-validation folds")
	fs.Uint64Var(&o.seed, "seed", 42, "seed of the fold split")
	fs.BoolVar(&o.sa, "spamassassin", true, "also evaluate SpamAssassin (needs spamassassin and sa-learn)")
	fs.IntVar(&o.saJobs, "jobs", 2, "parallel SpamAssassin processes")
	fs.BoolVar(&o.verbose, "v", false, "log progress")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	samples, err := spameval.LoadLabels(o.corpus)
	if err != nil {
		return fmt.Errorf("corpus %s: %w", o.corpus, err)
	}
	msgs := make([][]byte, len(samples))
	for i, s := range samples {
		b, err := os.ReadFile(s.Path)
		if err != nil {
			return err
		}
		msgs[i] = spameval.StripArtefacts(b)
	}
	fold := spameval.Folds(samples, o.folds, o.seed)

	start := time.Now()
	ours, err := crossValidate(ctx, samples, msgs, fold, o.folds)
	if err != nil {
		return fmt.Errorf("outflow: %w", err)
	}
	log.Info("outflow done", "elapsed", time.Since(start).Round(time.Millisecond))
	cfg := classify.DefaultConfig()
	reports := []spameval.Named{{Name: "Outflow", Report: spameval.Evaluate(ours, cfg.SpamThreshold)}}

	if o.sa {
		start = time.Now()
		theirs, err := spamAssassin(ctx, log, samples, msgs, fold, o.folds, o.saJobs)
		if err != nil {
			return fmt.Errorf("spamassassin: %w", err)
		}
		log.Info("spamassassin done", "elapsed", time.Since(start).Round(time.Second))
		reports = append(reports, spameval.Named{Name: "SpamAssassin", Report: spameval.Evaluate(theirs, 5)})
	}
	fmt.Fprintf(stdout, "%d-fold cross-validation on %s (%d messages)\n", o.folds, o.corpus, len(samples))
	return spameval.WriteTable(stdout, reports)
}

// crossValidate trains on all folds but one and scores the held-out fold,
// for every fold.
func crossValidate(ctx context.Context, samples []spameval.Sample, msgs [][]byte, fold []int, k int) ([]spameval.Scored, error) {
	exs := make([]classify.Example, len(samples))
	for i, s := range samples {
		exs[i] = classify.Example{Msg: msgs[i], Spam: s.Spam}
	}
	vs, err := classify.Vectorize(ctx, exs, 0)
	if err != nil {
		return nil, err
	}
	out := make([]spameval.Scored, len(samples))
	for f := range k {
		var train []classify.Vector
		for i := range vs {
			if fold[i] != f {
				train = append(train, vs[i])
			}
		}
		m, err := classify.TrainVectors(ctx, train, classify.TrainOptions{})
		if err != nil {
			return nil, err
		}
		e, err := classify.NewWithModel(classify.DefaultConfig(), m)
		if err != nil {
			return nil, err
		}
		for i := range samples {
			if fold[i] != f {
				continue
			}
			v, err := e.Classify(ctx, msgs[i])
			if err != nil {
				return nil, err
			}
			out[i] = spameval.Scored{Score: v.Score, Spam: samples[i].Spam, Subset: samples[i].Subset}
		}
	}
	return out, nil
}
