package spameval

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEvaluate(t *testing.T) {
	// 1000 ham scored 0..999/1000*50, one ham at 95; 10 spam at 60..96.
	var scored []Scored
	for i := range 1000 {
		scored = append(scored, Scored{Score: float64(i) / 20, Subset: "easy_ham"})
	}
	scored = append(scored, Scored{Score: 95, Subset: "hard_ham"})
	for i := range 10 {
		scored = append(scored, Scored{Score: 60 + 4*float64(i), Spam: true})
	}
	r := Evaluate(scored, 80)
	tests := []struct {
		name      string
		got, want float64
	}{
		{"recall", r.Recall, 0.5},               // 80, 84, 88, 92, 96
		{"fp rate", r.FPRate, 1.0 / 1001},       // the 95 ham
		{"precision", r.Precision, 5.0 / 6},     //
		{"recall at 0.1 %", r.RecallAtFP[0], 1}, // one FP allowed: cut at 49.95
		{"recall at 0.3 %", r.RecallAtFP[1], 1}, //
		{"recall at 1 %", r.RecallAtFP[2], 1.0}, //
		{"hard_ham FP", float64(r.SubsetFP["hard_ham"]), 1},
	}
	for _, tt := range tests {
		if math.Abs(tt.got-tt.want) > 1e-9 {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	// With no FP allowed the cut is the top ham (95): only the 96 spam passes.
	if got := recallAtFP([]float64{95, 10}, []float64{96, 95, 50}, 0); math.Abs(got-1.0/3) > 1e-9 {
		t.Errorf("recallAtFP(no FP) = %v, want 1/3 (ties count against)", got)
	}
}

func TestFolds(t *testing.T) {
	var samples []Sample
	for i := range 103 {
		samples = append(samples, Sample{Name: strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('0'+i%10)), Spam: i%3 == 0})
	}
	a := Folds(samples, 5, 42)
	// Reordering the input does not change any sample's fold.
	rev := make([]Sample, len(samples))
	for i, s := range samples {
		rev[len(samples)-1-i] = s
	}
	b := Folds(rev, 5, 42)
	for i := range samples {
		if a[i] != b[len(samples)-1-i] {
			t.Fatalf("fold of %s changed with input order", samples[i].Name)
		}
	}
	// Stratified: each fold's spam count is within one of the others.
	var spam [5]int
	for i, s := range samples {
		if s.Spam {
			spam[a[i]]++
		}
	}
	lo, hi := spam[0], spam[0]
	for _, n := range spam {
		lo, hi = min(lo, n), max(hi, n)
	}
	if hi-lo > 1 {
		t.Errorf("spam per fold %v, not stratified", spam)
	}
}

func TestLoadLabels(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		give    string
		want    int
		wantErr bool
	}{
		{"header and extra columns", "file\tlabel\tsubset\nspam/1\tspam\tspam\neasy_ham/2\tham\teasy_ham\n", 2, false},
		{"no header", "a\tham\nb\tSPAM\n", 2, false},
		{"bad label later", "a\tham\nb\tmaybe\n", 0, true},
		{"one column", "a\n", 0, true},
		{"empty", "", 0, true},
	}
	for _, tt := range tests {
		if err := os.WriteFile(filepath.Join(dir, "labels.tsv"), []byte(tt.give), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := LoadLabels(dir)
		if (err != nil) != tt.wantErr || len(got) != tt.want {
			t.Errorf("%s: LoadLabels = %d samples, %v; want %d, error %v", tt.name, len(got), err, tt.want, tt.wantErr)
		}
	}
	got, _ := readLabels(strings.NewReader("file\tlabel\tsubset\nspam/1\tspam\tspam_2\n"), "/c")
	if len(got) != 1 || got[0].Path != "/c/spam/1" || !got[0].Spam || got[0].Subset != "spam_2" {
		t.Errorf("readLabels = %+v", got)
	}
}

func TestStripArtefacts(t *testing.T) {
	give := "From jm@example.com  Thu Aug 22 13:27:39 2002\n" +
		"Return-Path: <a@b>\nDelivered-To: zzzz@localhost\nReceived: from x\n\tby y\nX-Spam-Status: No\n X-continued\n" +
		"X-Razor-Id: 1\nFrom: A <a@example.com>\nSubject: hi\n\nReceived: this body line stays\n"
	want := "From: A <a@example.com>\nSubject: hi\n\nReceived: this body line stays\n"
	if got := string(StripArtefacts([]byte(give))); got != want {
		t.Errorf("StripArtefacts = %q, want %q", got, want)
	}
}
