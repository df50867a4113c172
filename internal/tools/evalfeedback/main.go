// Command evalfeedback measures the feedback parsers on the shared
// corpora: the bounce reason of the first failed recipient against
// Sisimai's labels (agreement and confusions), and that every bounce of
// the corpus, labelled or not, parses without error.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"encoding/json"

	"github.com/outflowmail/outflow/pkg/arf"
	"github.com/outflowmail/outflow/pkg/dmarcreport"
	"github.com/outflowmail/outflow/pkg/dsn"
)

func main() {
	corpus := flag.String("corpus", "../shared/corpus", "directory holding sisimai-bounces/")
	flag.BoolVar(&verbose, "v", false, "list every disagreeing mail with its first recipient's status, reply code and diagnostic")
	flag.Parse()
	for _, step := range []func() error{
		func() error { return bounces(filepath.Join(*corpus, "sisimai-bounces")) },
		func() error { return complaints(filepath.Join(*corpus, "arf-complaints")) },
		func() error { return dmarc(filepath.Join(*corpus, "dmarc-aggregate")) },
	} {
		if err := step(); err != nil {
			fmt.Fprintln(os.Stderr, "evalfeedback:", err)
			os.Exit(1)
		}
	}
}

// verbose lists the disagreeing mails.
var verbose bool

// predict is the label the parser gives a message, in the corpus's terms.
func predict(rep *dsn.Report) string {
	switch {
	case rep.AutoReply:
		return "vacation"
	case !rep.IsBounce || len(rep.Recipients) == 0:
		return "notbounce"
	}
	return rep.Recipients[0].Reason
}

func bounces(dir string) error {
	labels, err := readLabels(filepath.Join(dir, "labels.tsv"))
	if err != nil {
		return err
	}
	names := make([]string, 0, len(labels))
	for n := range labels {
		names = append(names, n)
	}
	sort.Strings(names)
	agree := 0
	confusion := map[[2]string]int{}
	perLabel := map[string][2]int{}
	perFamily := map[string][2]int{}
	for _, n := range names {
		got := "error"
		var rep *dsn.Report
		if f, err := os.Open(filepath.Join(dir, "emails", n)); err == nil {
			if rep, err = dsn.Parse(f); err == nil {
				got = predict(rep)
			}
			f.Close()
		}
		want := labels[n]
		fam := family(n)
		pf := perFamily[fam]
		pf[1]++
		if got == want {
			pf[0]++
		}
		perFamily[fam] = pf
		if verbose && got != want {
			fmt.Printf("MISS %s want=%s got=%s", n, want, got)
			if rep != nil && len(rep.Recipients) > 0 {
				r := rep.Recipients[0]
				fmt.Printf(" status=%s code=%d action=%s diag=%q", r.Status, r.ReplyCode, r.Action, r.Diagnostic)
			}
			fmt.Println()
		}
		pl := perLabel[want]
		pl[1]++
		if got == want {
			agree++
			pl[0]++
		} else {
			confusion[[2]string{want, got}]++
		}
		perLabel[want] = pl
	}
	fmt.Printf("bounces (sisimai-bounces): first failed recipient's reason agrees with the label for %d of %d mails: %.1f %%\n",
		agree, len(names), 100*float64(agree)/float64(len(names)))
	fmt.Println("\nper label (agree/total):")
	ls := make([]string, 0, len(perLabel))
	for l := range perLabel {
		ls = append(ls, l)
	}
	sort.Slice(ls, func(i, j int) bool {
		return perLabel[ls[i]][1] > perLabel[ls[j]][1] || perLabel[ls[i]][1] == perLabel[ls[j]][1] && ls[i] < ls[j]
	})
	for _, l := range ls {
		fmt.Printf("  %-16s %3d/%-3d\n", l, perLabel[l][0], perLabel[l][1])
	}
	type cf struct {
		k [2]string
		n int
	}
	var cs []cf
	for k, n := range confusion {
		cs = append(cs, cf{k, n})
	}
	sort.Slice(cs, func(i, j int) bool {
		return cs[i].n > cs[j].n || cs[i].n == cs[j].n && cs[i].k[0]+cs[i].k[1] < cs[j].k[0]+cs[j].k[1]
	})
	fmt.Println("\ntop confusions (label -> predicted: count):")
	for i, c := range cs {
		if i == 20 {
			break
		}
		fmt.Printf("  %-16s -> %-16s %d\n", c.k[0], c.k[1], c.n)
	}
	fmt.Println("\nper MTA family (agree/total):")
	fs := make([]string, 0, len(perFamily))
	for f := range perFamily {
		fs = append(fs, f)
	}
	sort.Strings(fs)
	for _, f := range fs {
		fmt.Printf("  %-16s %3d/%-3d\n", f, perFamily[f][0], perFamily[f][1])
	}
	// Robustness: every file of emails/ and unlabelled/ parses.
	total, failed := 0, 0
	for _, sub := range []string{"emails", "unlabelled"} {
		files, _ := filepath.Glob(filepath.Join(dir, sub, "*"))
		for _, p := range files {
			total++
			f, err := os.Open(p)
			if err == nil {
				_, err = dsn.Parse(f)
				f.Close()
			}
			if err != nil {
				failed++
				fmt.Printf("  parse error %s: %v\n", p, err)
			}
		}
	}
	fmt.Printf("\nrobustness: %d of %d files (emails/ + unlabelled/) parsed without error or panic\n", total-failed, total)
	return nil
}

// family is the MTA or host module a corpus file is named for
// ("lhost-postfix-13.eml" -> "lhost-postfix", "rfc3464-51.eml" -> "rfc3464").
func family(name string) string {
	name = strings.TrimSuffix(name, ".eml")
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		return name[:i]
	}
	return name
}

func readLabels(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, label, ok := strings.Cut(sc.Text(), "\t")
		if ok && name != "" {
			out[name] = strings.TrimSpace(label)
		}
	}
	return out, sc.Err()
}

// complaints compares the feedback type of every ARF corpus file with
// its label (column 2 of labels.tsv, which has a header line).
func complaints(dir string) error {
	labels, err := readLabels(filepath.Join(dir, "labels.tsv"))
	if err != nil {
		return err
	}
	delete(labels, "file")
	names := make([]string, 0, len(labels))
	for n := range labels {
		names = append(names, n)
	}
	sort.Strings(names)
	agree := 0
	for _, n := range names {
		want, _, _ := strings.Cut(labels[n], "\t")
		got := "error"
		if f, err := os.Open(filepath.Join(dir, "emails", n)); err == nil {
			if rep, err := arf.Parse(f); err == nil {
				got = rep.FeedbackType
			}
			f.Close()
		}
		if got == want {
			agree++
		} else {
			fmt.Printf("  complaint %s: got %s, want %s\n", n, got, want)
		}
	}
	fmt.Printf("\ncomplaints (arf-complaints): feedback type agrees with the label for %d of %d reports: %.1f %%\n",
		agree, len(names), 100*float64(agree)/float64(len(names)))
	return nil
}

// dmarc parses every report of files.tsv: files of parsedmarc's
// aggregate_invalid set ("invalid__" in the name) must be rejected, all
// others parsed; where mail-auth's expected parse exists, the rows'
// source IPs and counts must match it.
func dmarc(dir string) error {
	files, err := readLabels(filepath.Join(dir, "files.tsv"))
	if err != nil {
		return err
	}
	delete(files, "file")
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	good := 0
	for _, n := range names {
		wantInvalid := strings.Contains(n, "invalid__")
		f, err := os.Open(filepath.Join(dir, "reports", n))
		if err != nil {
			return err
		}
		rep, perr := dmarcreport.Parse(f)
		f.Close()
		ok := (perr != nil) == wantInvalid
		note := ""
		if perr != nil {
			note = perr.Error()
		}
		if ok && perr == nil {
			cols := strings.Split(files[n], "\t")
			if exp := cols[len(cols)-1]; strings.HasPrefix(exp, "expected/") {
				if msg := compareExpected(filepath.Join(dir, exp), rep); msg != "" {
					ok, note = false, msg
				}
			}
		}
		if ok {
			good++
		}
		if !ok || perr != nil {
			fmt.Printf("  dmarc %s: ok=%v %s\n", n, ok, note)
		}
	}
	fmt.Printf("\ndmarc (dmarc-aggregate): %d of %d reports handled as expected (valid parsed and matching expected/, invalid rejected)\n", good, len(names))
	return nil
}

func compareExpected(path string, rep *dmarcreport.Report) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var exp struct {
		Record []struct {
			Row struct {
				SourceIP string `json:"source_ip"`
				Count    int64  `json:"count"`
			} `json:"row"`
		} `json:"record"`
	}
	if err := json.Unmarshal(b, &exp); err != nil {
		return "expected: " + err.Error()
	}
	if len(exp.Record) != len(rep.Rows) {
		return fmt.Sprintf("%d rows, expected %d", len(rep.Rows), len(exp.Record))
	}
	for i, r := range exp.Record {
		if r.Row.SourceIP != rep.Rows[i].SourceIP || r.Row.Count != rep.Rows[i].Count {
			return fmt.Sprintf("row %d: %s x%d, expected %s x%d", i+1, rep.Rows[i].SourceIP, rep.Rows[i].Count, r.Row.SourceIP, r.Row.Count)
		}
	}
	return ""
}
