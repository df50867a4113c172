package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/suppression"
	"github.com/outflowmail/outflow/pkg/tenant"
)

const suppressionUsage = `usage: outflow ctl suppression list TENANT
       outflow ctl suppression add TENANT ADDRESS [--reason TEXT] [--ttl DURATION]
       outflow ctl suppression remove TENANT ADDRESS`

// suppressionCtl runs "ctl suppression list|add|remove TENANT [ADDRESS]".
func suppressionCtl(ctx context.Context, js jetstream.JetStream, replicas int, args []string, stdout io.Writer) error {
	pos, flags := splitPositional(args)
	if len(pos) < 2 {
		return errors.New(suppressionUsage)
	}
	sub, tenantID := pos[0], pos[1]
	if err := tenant.ValidID(tenantID); err != nil {
		return fmt.Errorf("ctl suppression: %w", err)
	}
	fs := flag.NewFlagSet("suppression "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	reason := fs.String("reason", "added by operator", "why the address is suppressed")
	ttl := fs.Duration("ttl", 0, "how long the entry lasts (0: forever)")
	if err := fs.Parse(flags); err != nil {
		return fmt.Errorf("ctl suppression %s: %w", sub, err)
	}
	s, err := suppression.Open(ctx, js, replicas)
	if err != nil {
		return err
	}
	switch {
	case sub == "list" && len(pos) == 2:
		return suppressionList(ctx, s, tenantID, stdout)
	case sub == "add" && len(pos) == 3:
		now := time.Now().UTC()
		e := suppression.Entry{Tenant: tenantID, Address: pos[2], Reason: *reason, Source: suppression.SourceManual, Created: now}
		if *ttl > 0 {
			e.Expires = now.Add(*ttl)
		}
		added, err := s.Add(ctx, e)
		if err != nil {
			return err
		}
		if !added {
			fmt.Fprintf(stdout, "%s is already suppressed for %s by a longer-lasting entry\n", pos[2], tenantID)
			return nil
		}
		fmt.Fprintf(stdout, "suppressed %s for %s\n", pos[2], tenantID)
		return nil
	case sub == "remove" && len(pos) == 3:
		if err := s.Remove(ctx, tenantID, pos[2]); err != nil {
			return fmt.Errorf("ctl suppression remove %s %s: %w", tenantID, pos[2], err)
		}
		fmt.Fprintf(stdout, "removed %s from the suppression list of %s\n", pos[2], tenantID)
		return nil
	}
	return errors.New(suppressionUsage)
}

// suppressionList prints one line per entry: address, source, reason,
// since, until (never, or expired).
func suppressionList(ctx context.Context, s *suppression.Store, tenantID string, stdout io.Writer) error {
	es, err := s.List(ctx, tenantID)
	if err != nil {
		return err
	}
	slices.SortFunc(es, func(a, b suppression.Entry) int { return strings.Compare(a.Address, b.Address) })
	now := time.Now()
	for _, e := range es {
		until := "never"
		if !e.Expires.IsZero() {
			until = e.Expires.UTC().Format(time.RFC3339)
			if !e.Active(now) {
				until += " (expired)"
			}
		}
		fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\t%s\n", e.Address, e.Source, e.Reason, e.Created.UTC().Format(time.RFC3339), until)
	}
	return nil
}
