package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/dkimsign"
	"github.com/outflowmail/outflow/pkg/tenant"
)

const dkimUsage = `usage:
  outflow ctl dkim generate TENANT DOMAIN [--selector S] [--algo rsa|ed25519] [--activate-in DURATION]
  outflow ctl dkim show TENANT DOMAIN [--selector S]
  outflow ctl dkim list TENANT
  outflow ctl dkim delete TENANT DOMAIN --selector S
`

// dkimCtl manages tenants' DKIM keys in the dkim-keys bucket. Private keys
// are never printed; generate and show print the DNS TXT record to publish.
func dkimCtl(ctx context.Context, tenants tenant.Store, kv jetstream.KeyValue, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, dkimUsage)
		return errors.New("ctl dkim: no command")
	}
	keys := dkimsign.Store{KV: kv}
	pos, rest := splitPositional(args[1:])
	fs := flag.NewFlagSet("dkim "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, dkimUsage) }
	selector := fs.String("selector", "", "selector (default: s<YYYYMMDD> for rsa, e<YYYYMMDD> for ed25519)")
	algoName := fs.String("algo", "rsa", "key algorithm: rsa (2048 bits) or ed25519")
	activateIn := fs.Duration("activate-in", 0, "start signing this long after now, once the TXT record is published (rotation)")
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("ctl dkim %s: unexpected arguments %q", args[0], fs.Args())
	}
	switch {
	case args[0] == "generate" && len(pos) == 2:
		algo, err := dkimsign.ParseAlgo(*algoName)
		if err != nil {
			return fmt.Errorf("--algo: %w", err)
		}
		if *activateIn < 0 {
			return fmt.Errorf("--activate-in: %v, must not be negative", *activateIn)
		}
		return dkimGenerate(ctx, tenants, keys, pos[0], strings.ToLower(pos[1]), *selector, algo, *activateIn, stdout)
	case args[0] == "show" && len(pos) == 2:
		domain := strings.ToLower(pos[1])
		if *selector != "" {
			ki, err := keys.Get(ctx, pos[0], domain, *selector)
			if err != nil {
				return err
			}
			return printDKIMRecord(stdout, ki)
		}
		list, err := keys.List(ctx, pos[0], domain)
		if err != nil {
			return err
		}
		if len(list) == 0 {
			return fmt.Errorf("tenant %s domain %s: %w", pos[0], domain, dkimsign.ErrNoKey)
		}
		for _, ki := range list {
			if err := printDKIMRecord(stdout, ki); err != nil {
				return err
			}
		}
		return nil
	case args[0] == "list" && len(pos) == 1:
		list, err := keys.List(ctx, pos[0], "")
		if err != nil {
			return err
		}
		for _, ki := range list {
			fmt.Fprintf(stdout, "%s\t%s\t%s\tcreated %s\tsigns from %s\n", ki.Domain, ki.Selector, ki.Algo,
				ki.Created.UTC().Format(time.RFC3339), ki.NotBefore.UTC().Format(time.RFC3339))
		}
		return nil
	case args[0] == "delete" && len(pos) == 2 && *selector != "":
		if err := keys.Delete(ctx, pos[0], strings.ToLower(pos[1]), *selector); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted %s\n", dkimsign.StoreKey(pos[0], strings.ToLower(pos[1]), *selector))
		return nil
	}
	fmt.Fprint(stderr, dkimUsage)
	return fmt.Errorf("ctl dkim: bad command %q", strings.Join(args, " "))
}

func dkimGenerate(ctx context.Context, tenants tenant.Store, keys dkimsign.Store, tenantID, domain, selector string, algo dkimsign.Algo, activateIn time.Duration, stdout io.Writer) error {
	t, err := tenants.Get(ctx, tenantID)
	if err != nil {
		return err
	}
	if !t.HasDomain(domain) {
		return fmt.Errorf("tenant %s: %s is not one of its verified domains (outflow ctl domain add)", tenantID, domain)
	}
	now := time.Now().UTC()
	if selector == "" {
		selector = map[dkimsign.Algo]string{dkimsign.RSA: "s", dkimsign.Ed25519: "e"}[algo] + now.Format("20060102")
	}
	if err := dkimsign.ValidSelector(selector); err != nil {
		return fmt.Errorf("--selector: %w", err)
	}
	k, err := dkimsign.Generate(algo)
	if err != nil {
		return err
	}
	pemKey, err := dkimsign.MarshalPrivateKey(k)
	if err != nil {
		return err
	}
	rec := dkimsign.Record{Algo: algo, Created: now, NotBefore: now.Add(activateIn), PrivateKey: string(pemKey)}
	if err := keys.Create(ctx, tenantID, domain, selector, rec); err != nil {
		return err
	}
	return printDKIMRecord(stdout, dkimsign.KeyInfo{Tenant: tenantID, Domain: domain, Selector: selector, Record: rec})
}

// printDKIMRecord prints the TXT record as a zone-file line, its value split
// into strings of at most 255 bytes.
func printDKIMRecord(w io.Writer, ki dkimsign.KeyInfo) error {
	k, _, err := dkimsign.ParsePrivateKey([]byte(ki.PrivateKey))
	if err != nil {
		return fmt.Errorf("%s: %w", dkimsign.StoreKey(ki.Tenant, ki.Domain, ki.Selector), err)
	}
	txt, err := dkimsign.TXTRecord(k.Public())
	if err != nil {
		return err
	}
	parts := dkimsign.SplitTXT(txt)
	for i, p := range parts {
		parts[i] = `"` + p + `"`
	}
	fmt.Fprintf(w, "; tenant %s, %s key, signs from %s\n%s. IN TXT ( %s )\n", ki.Tenant, ki.Algo,
		ki.NotBefore.UTC().Format(time.RFC3339), dkimsign.RecordName(ki.Selector, ki.Domain), strings.Join(parts, " "))
	return nil
}
