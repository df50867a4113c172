// Package spameval measures a spam classifier on a labelled corpus: it reads
// labels.tsv files, splits a corpus into deterministic cross-validation folds
// and computes the figures the classifier's targets are stated in (spam
// recall, ham false-positive rate, precision, and the recall reached at a
// fixed false-positive rate). `outflow classify -eval` and the
// cross-validation tool behind `make eval-classifier` share it, so both print
// the same table computed the same way.
package spameval

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
)

// Sample is one labelled message file.
type Sample struct {
	Path   string // absolute or relative to the working directory
	Name   string // as written in labels.tsv
	Spam   bool
	Subset string // third column of labels.tsv when present, else the first path element
}

// ErrNoLabels: labels.tsv had no usable line.
var ErrNoLabels = errors.New("spameval: no labelled files")

// LoadLabels reads dir/labels.tsv: lines of file<TAB>ham|spam, paths relative
// to dir, more columns allowed (a third is the subset). A first line whose
// label is neither ham nor spam is a header and skipped; any later such line
// is an error.
func LoadLabels(dir string) ([]Sample, error) {
	f, err := os.Open(filepath.Join(dir, "labels.tsv"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLabels(f, dir)
}

func readLabels(r io.Reader, dir string) ([]Sample, error) {
	var out []Sample
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		cols := strings.Split(line, "\t")
		if len(cols) < 2 {
			return nil, fmt.Errorf("labels.tsv line %d: want file<TAB>label", n)
		}
		label := strings.ToLower(strings.TrimSpace(cols[1]))
		if label != "ham" && label != "spam" {
			if n == 1 {
				continue
			}
			return nil, fmt.Errorf("labels.tsv line %d: label %q: want ham or spam", n, cols[1])
		}
		s := Sample{Path: filepath.Join(dir, cols[0]), Name: cols[0], Spam: label == "spam"}
		if len(cols) >= 3 {
			s.Subset = cols[2]
		} else {
			s.Subset, _, _ = strings.Cut(filepath.ToSlash(cols[0]), "/")
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read labels.tsv: %w", err)
	}
	if len(out) == 0 {
		return nil, ErrNoLabels
	}
	return out, nil
}

// Folds assigns each sample to one of k folds, stratified by label: within
// each class the samples are sorted by name, shuffled with a fixed seed and
// dealt round-robin. The split depends only on the names and labels, never on
// file order or the run. It returns the fold of each sample.
func Folds(samples []Sample, k int, seed uint64) []int {
	fold := make([]int, len(samples))
	rng := rand.New(rand.NewPCG(seed, 0x666f6c6473))
	for _, spam := range []bool{false, true} {
		var idx []int
		for i, s := range samples {
			if s.Spam == spam {
				idx = append(idx, i)
			}
		}
		slices.SortFunc(idx, func(a, b int) int { return strings.Compare(samples[a].Name, samples[b].Name) })
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		for j, i := range idx {
			fold[i] = j % k
		}
	}
	return fold
}

// Scored is one message's score (any scale, higher is spammier) and truth.
type Scored struct {
	Score  float64
	Spam   bool
	Subset string
}

// FPTargets returns the false-positive rates at which recall is reported:
// 0.1 %, 0.3 % and 1 %.
func FPTargets() [3]float64 { return [3]float64{0.001, 0.003, 0.01} }

// Report holds the figures for one system on one corpus.
type Report struct {
	Spam, Ham  int
	Threshold  float64    // the system's own spam threshold
	TP, FP     int        // at Threshold
	Recall     float64    // TP / Spam
	FPRate     float64    // FP / Ham
	Precision  float64    // TP / (TP + FP)
	RecallAtFP [3]float64 // at each of FPTargets()
	// SubsetFP counts false positives per subset (e.g. hard_ham).
	SubsetFP map[string]int
}

// Evaluate computes the report for scores judged spam at score >= threshold.
func Evaluate(scored []Scored, threshold float64) Report {
	r := Report{Threshold: threshold, SubsetFP: map[string]int{}}
	var ham, spam []float64
	for _, s := range scored {
		if s.Spam {
			r.Spam++
			spam = append(spam, s.Score)
			if s.Score >= threshold {
				r.TP++
			}
			continue
		}
		r.Ham++
		ham = append(ham, s.Score)
		if s.Score >= threshold {
			r.FP++
			r.SubsetFP[s.Subset]++
		}
	}
	r.Recall = ratio(r.TP, r.Spam)
	r.FPRate = ratio(r.FP, r.Ham)
	r.Precision = ratio(r.TP, r.TP+r.FP)
	slices.SortFunc(ham, func(a, b float64) int { return cmp.Compare(b, a) })
	for i, target := range FPTargets() {
		r.RecallAtFP[i] = recallAtFP(ham, spam, target)
	}
	return r
}

// recallAtFP is the share of spam scored strictly above the highest ham score
// that must still pass for the false-positive rate to stay at or below
// target. hamDesc is sorted in decreasing order. Ties count against the
// system.
func recallAtFP(hamDesc, spam []float64, target float64) float64 {
	if len(spam) == 0 {
		return math.NaN()
	}
	k := int(math.Floor(target*float64(len(hamDesc)) + 1e-9))
	if k >= len(hamDesc) {
		return 1
	}
	cut := hamDesc[k]
	n := 0
	for _, s := range spam {
		if s > cut {
			n++
		}
	}
	return float64(n) / float64(len(spam))
}

func ratio(a, b int) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// Named is a report with the name of the system it measures.
type Named struct {
	Name   string
	Report Report
}

// WriteTable prints the reports side by side, one column per system.
func WriteTable(w io.Writer, reports []Named) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(label string, f func(Report) string) {
		fmt.Fprintf(tw, "%s\t", label)
		for _, n := range reports {
			fmt.Fprintf(tw, "%s\t", f(n.Report))
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintf(tw, "metric\t")
	for _, n := range reports {
		fmt.Fprintf(tw, "%s\t", n.Name)
	}
	fmt.Fprintln(tw)
	row("messages (spam/ham)", func(r Report) string { return fmt.Sprintf("%d/%d", r.Spam, r.Ham) })
	row("threshold", func(r Report) string { return fmt.Sprintf("%g", r.Threshold) })
	row("spam recall", func(r Report) string { return pct(r.Recall) })
	row("ham FP rate", func(r Report) string { return fmt.Sprintf("%s (%d)", pct(r.FPRate), r.FP) })
	row("precision", func(r Report) string { return pct(r.Precision) })
	for i, t := range FPTargets() {
		row(fmt.Sprintf("recall at FP %g %%", t*100), func(r Report) string { return pct(r.RecallAtFP[i]) })
	}
	row("hard_ham FP", func(r Report) string { return fmt.Sprintf("%d", r.SubsetFP["hard_ham"]) })
	return tw.Flush()
}

func pct(x float64) string {
	if math.IsNaN(x) {
		return "-"
	}
	return fmt.Sprintf("%.2f %%", 100*x)
}

// StripArtefacts returns msg without what the SpamAssassin corpus added to the
// messages after they were sent and a tenant's submission never has: the mbox
// "From " line and the Received, Delivered-To, Return-Path, X-Spam-* and
// X-Razor* header fields (with their continuation lines). The body is left
// alone.
func StripArtefacts(msg []byte) []byte {
	if strings.HasPrefix(string(msg[:min(5, len(msg))]), "From ") {
		if i := strings.IndexByte(string(msg), '\n'); i >= 0 {
			msg = msg[i+1:]
		}
	}
	out := make([]byte, 0, len(msg))
	skipping := false
	for len(msg) > 0 {
		i := strings.IndexByte(string(msg), '\n')
		line := msg
		if i >= 0 {
			line = msg[:i+1]
		}
		msg = msg[len(line):]
		trimmed := strings.TrimRight(string(line), "\r\n")
		if trimmed == "" {
			out = append(out, line...)
			out = append(out, msg...)
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if !skipping {
				out = append(out, line...)
			}
			continue
		}
		name, _, _ := strings.Cut(trimmed, ":")
		n := strings.ToLower(strings.TrimSpace(name))
		skipping = n == "received" || n == "delivered-to" || n == "return-path" ||
			strings.HasPrefix(n, "x-spam-") || strings.HasPrefix(n, "x-razor")
		if !skipping {
			out = append(out, line...)
		}
	}
	return out
}
