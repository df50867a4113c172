package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/app"
	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/resolver"
	"github.com/outflowmail/outflow/pkg/tlsrpt"
)

const tlsrptUsage = `usage: outflow ctl tlsrpt report [--date YYYY-MM-DD] [--out DIR] [--resolver HOST:PORT]`

// tlsrptCtl runs "ctl tlsrpt report": the day's TLS reports (RFC 8460),
// one JSON file per policy domain that publishes a _smtp._tls record.
func tlsrptCtl(ctx context.Context, js jetstream.JetStream, configPath string, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "report" {
		return errors.New(tlsrptUsage)
	}
	fs := flag.NewFlagSet("tlsrpt report", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	date := fs.String("date", time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly), "UTC day to report (default yesterday)")
	out := fs.String("out", ".", "directory for the report files")
	server := fs.String("resolver", "", "DNS server for _smtp._tls lookups (default sender.resolver)")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 {
		return fmt.Errorf("ctl tlsrpt: %w\n%s", cmp.Or(err, errors.New("unexpected arguments")), tlsrptUsage)
	}
	day, err := time.Parse(time.DateOnly, *date)
	if err != nil {
		return fmt.Errorf("ctl tlsrpt: --date %q: want YYYY-MM-DD", *date)
	}
	cfg := app.DefaultConfig()
	if configPath != "" {
		c, err := app.Load(configPath)
		if err != nil {
			return err
		}
		cfg = *c
	}
	res, err := resolver.New(cmp.Or(*server, cfg.Sender.Resolver), cfg.Sender.ResolverTimeout)
	if err != nil {
		return fmt.Errorf("ctl tlsrpt: %w", err)
	}
	rc := cfg.Sender.TLS.Report
	org := tlsrpt.Org{Name: rc.OrganizationName, Contact: rc.ContactInfo, Domain: rc.Domain}
	results, err := tlsrpt.Collect(ctx, js, bus.StreamEvents, day)
	if err != nil {
		return err
	}
	reports := tlsrpt.Build(org, day, results)
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("ctl tlsrpt: --out: %w", err)
	}
	written, without := 0, 0
	for _, domain := range slices.Sorted(maps.Keys(reports)) {
		rec, ok, err := tlsrpt.Lookup(ctx, res, domain)
		if err != nil {
			fmt.Fprintf(stderr, "%s: _smtp._tls lookup: %v (no report written; run again later)\n", domain, err)
			continue
		}
		if !ok {
			without++
			continue
		}
		path := filepath.Join(*out, tlsrpt.FileName(org, domain, reports[domain]))
		if err := writeReport(path, reports[domain]); err != nil {
			return err
		}
		written++
		fmt.Fprintf(stdout, "%s\t%s\t%s\n", domain, path, strings.Join(rec.RUA, ","))
	}
	fmt.Fprintf(stderr, "%s: %d TLS sessions, %d policy domains, %d reports written, %d domains without a _smtp._tls record\n",
		day.Format(time.DateOnly), len(results), len(reports), written, without)
	return nil
}

// writeReport writes the report under a temporary name and renames it, so
// that a file with the final name is always complete.
func writeReport(path string, r *tlsrpt.Report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
