package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/outflowmail/outflow/pkg/spameval"
)

// saScript scores message files with the Mail::SpamAssassin API, the library
// behind the spamassassin command, loaded once per fold instead of once per
// message. Network tests are off (local_tests_only); the user preferences
// file points Bayes at the fold's private database.
const saScript = `
use strict; use warnings;
use Mail::SpamAssassin;
my ($prefs, $list) = @ARGV;
my $sa = Mail::SpamAssassin->new({
  local_tests_only => 1, userprefs_filename => $prefs, dont_copy_prefs => 1,
  username => 'outflow-eval',
});
$sa->init(1);
open(my $fl, '<', $list) or die "open $list: $!";
$| = 1;
while (my $f = <$fl>) {
  chomp $f;
  open(my $fh, '<', $f) or die "open $f: $!";
  local $/; my $txt = <$fh>; close $fh;
  my $msg = $sa->parse($txt);
  my $st = $sa->check($msg);
  printf "%s\t%.3f\n", $f, $st->get_score();
  $st->finish; $msg->finish;
}
`

// spamAssassin evaluates SpamAssassin on the same folds: for each fold it
// writes the training messages to a temporary directory, trains a private
// Bayes database with sa-learn (network tests off), and scores the held-out
// messages. Folds run jobs at a time.
func spamAssassin(ctx context.Context, log *slog.Logger, samples []spameval.Sample, msgs [][]byte, fold []int, k, jobs int) ([]spameval.Scored, error) {
	for _, tool := range []string{"sa-learn", "perl"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not installed (apt-get install spamassassin): %w", tool, err)
		}
	}
	tmp, err := os.MkdirTemp("", "outflow-sa-eval-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	// Write each message once; folds refer to the files.
	paths := make([]string, len(samples))
	for i := range samples {
		paths[i] = filepath.Join(tmp, "msg", strconv.Itoa(i))
		if i == 0 {
			if err := os.MkdirAll(filepath.Dir(paths[i]), 0o755); err != nil {
				return nil, err
			}
		}
		if err := os.WriteFile(paths[i], msgs[i], 0o644); err != nil {
			return nil, err
		}
	}
	out := make([]spameval.Scored, len(samples))
	scores := make([]map[string]float64, k)
	errs := make([]error, k)
	sem := make(chan struct{}, max(jobs, 1))
	var wg sync.WaitGroup
	for f := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			scores[f], errs[f] = saFold(ctx, log, tmp, f, samples, paths, fold)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for i, s := range samples {
		sc, ok := scores[fold[i]][paths[i]]
		if !ok {
			return nil, fmt.Errorf("no score for %s", s.Name)
		}
		out[i] = spameval.Scored{Score: sc, Spam: s.Spam, Subset: s.Subset}
	}
	return out, nil
}

// saFold trains Bayes on every fold but f and scores fold f.
func saFold(ctx context.Context, log *slog.Logger, tmp string, f int, samples []spameval.Sample, paths []string, fold []int) (map[string]float64, error) {
	dir := filepath.Join(tmp, fmt.Sprintf("fold%d", f))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	prefs := filepath.Join(dir, "user_prefs")
	cfg := fmt.Sprintf("bayes_path %s/bayes\nuse_bayes 1\nbayes_auto_learn 0\nbayes_auto_expire 0\nuse_auto_whitelist 0\nuse_razor2 0\nuse_pyzor 0\nuse_dcc 0\nskip_rbl_checks 1\nlock_method flock\n", dir)
	if err := os.WriteFile(prefs, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	var ham, spam, held []string
	for i, s := range samples {
		switch {
		case fold[i] == f:
			held = append(held, paths[i])
		case s.Spam:
			spam = append(spam, paths[i])
		default:
			ham = append(ham, paths[i])
		}
	}
	for _, set := range []struct {
		flag  string
		files []string
	}{{"--ham", ham}, {"--spam", spam}} {
		list := filepath.Join(dir, strings.TrimPrefix(set.flag, "--")+".list")
		if err := os.WriteFile(list, []byte(strings.Join(set.files, "\n")+"\n"), 0o644); err != nil {
			return nil, err
		}
		cmd := exec.CommandContext(ctx, "sa-learn", "--local", "--no-sync", "-p", prefs,
			"--dbpath", dir, set.flag, "-f", list)
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("fold %d: sa-learn %s: %w: %s", f, set.flag, err, b)
		}
	}
	cmd := exec.CommandContext(ctx, "sa-learn", "--local", "-p", prefs, "--dbpath", dir, "--sync")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("fold %d: sa-learn --sync: %w: %s", f, err, b)
	}
	log.Info("spamassassin fold trained", "fold", f, "ham", len(ham), "spam", len(spam))

	list := filepath.Join(dir, "held.list")
	if err := os.WriteFile(list, []byte(strings.Join(held, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	cmd = exec.CommandContext(ctx, "perl", "-e", saScript, prefs, list)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	scores := make(map[string]float64, len(held))
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			continue
		}
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			continue
		}
		scores[name] = x
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("fold %d: score: %w: %s", f, err, lastLines(stderr.String(), 5))
	}
	log.Info("spamassassin fold scored", "fold", f, "messages", len(scores))
	return scores, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
