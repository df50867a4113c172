package classify

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// goldenFile holds the verdicts of the embedded model on every fifth corpus
// message. Speed work on the parser and the extractor must not move a single
// score: a changed line here means the features changed, which needs a
// retrained model and a new quality evaluation, not a new golden file. After
// retraining (`make model`), rewrite it with
//
//	OUTFLOW_UPDATE_GOLDEN=1 go test -run TestClassify_Golden ./pkg/classify
const goldenFile = "testdata/golden.tsv"

// goldenLine is one message's verdict: score, label, fingerprint and a hash
// of the symbols with their weights, so that a moved token family shows even
// when the score rounds the same.
func goldenLine(file string, v Verdict) string {
	sym, _ := json.Marshal(v.Symbols)
	h := fnv.New64a()
	h.Write(sym)
	return fmt.Sprintf("%s\t%.2f\t%s\t%s\t%016x", file, v.Score, v.Label, v.Fingerprint, h.Sum64())
}

func TestClassify_Golden(t *testing.T) {
	dir := corpusDir(t)
	labels, err := os.Open(filepath.Join(dir, "labels.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer labels.Close()
	e := newEngine(t)
	ctx := context.Background()
	var got []string
	sc := bufio.NewScanner(labels)
	for i := 0; sc.Scan(); i++ {
		file, _, _ := strings.Cut(sc.Text(), "\t")
		if i == 0 || i%5 != 0 {
			continue // header line, and the four messages between samples
		}
		raw, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		v, err := e.Classify(ctx, raw)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, goldenLine(file, v))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("OUTFLOW_UPDATE_GOLDEN") != "" {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenFile, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	data, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(got) != len(want) {
		t.Fatalf("scored %d sample messages, golden file has %d", len(got), len(want))
	}
	bad := 0
	for i := range got {
		if got[i] != want[i] {
			bad++
			if bad <= 10 {
				t.Errorf("verdict changed:\n got %s\nwant %s", got[i], want[i])
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d sample verdicts differ from %s", bad, len(got), goldenFile)
	}
}
