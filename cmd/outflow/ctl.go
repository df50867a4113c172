package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/outflowmail/outflow/app"
	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/tenant"
)

const ctlUsage = `usage: outflow ctl [-config FILE] [-nats URL] <command>

commands:
  tenant create ID --password-stdin --domain D [--domain D2] [--client-ip CIDR] [--pool P]
  tenant list
  tenant show ID                             (account, state, reason, pin, since, figures now from ClickHouse)
  tenant policy ID STATE [--reason TEXT] [--pin]  (STATE: good, probation, throttled, suspended)
  tenant policy ID --unpin                   (hand the tenant back to the reputation loop)
  held list|release|purge TENANT             (a suspended tenant's held mail)
  domain add TENANT DOMAIN
  suppression list|add|remove TENANT [ADDRESS] [--reason TEXT] [--ttl DURATION]
  dkim generate TENANT DOMAIN [--selector S] [--algo rsa|ed25519] [--activate-in DURATION]
  dkim show TENANT DOMAIN [--selector S] | dkim list TENANT | dkim delete TENANT DOMAIN --selector S
  tlsrpt report [--date YYYY-MM-DD] [--out DIR]  (TLS-RPT daily reports, one JSON file per domain)
  hash-password                              (reads a password on stdin, prints its bcrypt hash)
  trace MESSAGE_ID                           (verdict, routing, attempts, bounces, complaints from ClickHouse)
  migrate [--dry-run]                        (ClickHouse schema: applied and pending migrations)
  query [NAME [--param NAME=VALUE ...]]      (list or run an analyst query of deploy/clickhouse/queries)
`

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func runCtl(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, ctlUsage) }
	configPath := fs.String("config", "", "configuration file (for nats settings)")
	natsURL := fs.String("nats", "", "NATS server URL (default: the config's nats.url, else nats://127.0.0.1:4222)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return errors.New("ctl: no command")
	}
	if rest[0] == "hash-password" {
		return hashPassword(stdin, stdout)
	}
	if analyticsCommand(rest[0]) {
		return analyticsCtl(ctx, *configPath, rest, stdout)
	}
	bc := bus.DefaultConfig()
	if *configPath != "" {
		cfg, err := app.Load(*configPath)
		if err != nil {
			return err
		}
		bc = cfg.NATS.Config
		if bc.URL == "" {
			bc.URL = "nats://" + cfg.NATS.Embedded.Listen
		}
	}
	if *natsURL != "" {
		bc.URL = *natsURL
	}
	bc.Name = "outflow ctl"
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	b, err := bus.Connect(cctx, bc, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		return err
	}
	defer b.Close()
	s := tenant.Store{Tenants: b.Tenants, Policy: b.Policy}
	c := &ctl{s: s, stdin: stdin, stdout: stdout, stderr: stderr, configPath: *configPath}
	switch {
	case len(rest) >= 2 && rest[0] == "tenant":
		return c.tenant(cctx, rest[1], rest[2:])
	case len(rest) == 4 && rest[0] == "domain" && rest[1] == "add":
		return c.domainAdd(cctx, rest[2], rest[3])
	case rest[0] == "suppression":
		return suppressionCtl(cctx, b.JS, bc.Replicas, rest[1:], stdout)
	case rest[0] == "dkim":
		return dkimCtl(cctx, s, b.DKIMKeys, rest[1:], stdout, stderr)
	case rest[0] == "tlsrpt":
		return tlsrptCtl(ctx, b.JS, *configPath, rest[1:], stdout, stderr)
	case rest[0] == "held":
		return heldCtl(cctx, b, rest[1:], stdout)
	}
	fs.Usage()
	return fmt.Errorf("ctl: unknown command %q", strings.Join(rest, " "))
}

type ctl struct {
	s      tenant.Store
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// configPath is -config, for commands that read ClickHouse too.
	configPath string
}

func (c *ctl) tenant(ctx context.Context, sub string, args []string) error {
	switch sub {
	case "create":
		return c.tenantCreate(ctx, args)
	case "list":
		ids, err := c.s.List(ctx)
		if err != nil {
			return err
		}
		slices.Sort(ids)
		for _, id := range ids {
			p, err := c.s.GetPolicy(ctx, id)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "%s\t%s\n", id, p.State)
		}
		return nil
	case "show":
		if len(args) != 1 {
			return errors.New("ctl: tenant show ID")
		}
		return c.tenantShow(ctx, args[0])
	case "policy":
		return c.tenantPolicy(ctx, args)
	}
	return fmt.Errorf("ctl: unknown tenant command %q", sub)
}

// splitPositional separates the leading positional arguments from flags, so
// that "tenant create ID --domain D" parses as people write it.
func splitPositional(args []string) (pos, flags []string) {
	for i, a := range args {
		if strings.HasPrefix(a, "-") {
			return args[:i], args[i:]
		}
	}
	return args, nil
}

func (c *ctl) tenantCreate(ctx context.Context, args []string) error {
	pos, rest := splitPositional(args)
	fs := flag.NewFlagSet("tenant create", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	pwStdin := fs.Bool("password-stdin", false, "read the password from stdin")
	var domains, ips multiFlag
	fs.Var(&domains, "domain", "verified sender domain (repeatable)")
	fs.Var(&ips, "client-ip", "client IP range identifying the tenant without AUTH (repeatable)")
	poolName := fs.String("pool", "", "dedicated pool")
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("ctl: tenant create ID --password-stdin --domain D")
	}
	t := &tenant.Tenant{ID: pos[0], ClientIPs: ips, Pool: *poolName, Created: time.Now().UTC()}
	for _, d := range domains {
		if err := t.AddDomain(d); err != nil {
			return fmt.Errorf("--domain: %w", err)
		}
	}
	if *pwStdin {
		pw, err := readPassword(c.stdin)
		if err != nil {
			return err
		}
		if err := t.SetPassword(pw); err != nil {
			return err
		}
	} else if len(ips) == 0 {
		return errors.New("ctl: a tenant needs --password-stdin or --client-ip to be able to submit")
	}
	if err := c.s.Create(ctx, t); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "created tenant %s\n", t.ID)
	return nil
}

func (c *ctl) tenantShow(ctx context.Context, id string) error {
	t, err := c.s.Get(ctx, id)
	if err != nil {
		return err
	}
	p, err := c.s.GetPolicy(ctx, id)
	if err != nil {
		return err
	}
	out := struct {
		ID        string        `json:"id"`
		Domains   []string      `json:"domains"`
		ClientIPs []string      `json:"client_ips,omitempty"`
		Pool      string        `json:"pool,omitempty"`
		HasPass   bool          `json:"password_set"`
		Created   time.Time     `json:"created"`
		Policy    tenant.Policy `json:"policy"`
		// Figures are the tenant's figures now, per window (the policy's
		// are those of its last change); FiguresError says why not.
		Figures      []string `json:"figures_now,omitempty"`
		FiguresError string   `json:"figures_error,omitempty"`
	}{ID: t.ID, ClientIPs: t.ClientIPs, Pool: t.Pool, HasPass: t.PasswordHash != "", Created: t.Created, Policy: p}
	if figs, err := currentFigures(ctx, c.configPath, id); err != nil {
		out.FiguresError = err.Error()
	} else {
		out.Figures = figs
	}
	for _, d := range t.Domains {
		out.Domains = append(out.Domains, d.Name)
	}
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func (c *ctl) tenantPolicy(ctx context.Context, args []string) error {
	pos, rest := splitPositional(args)
	fs := flag.NewFlagSet("tenant policy", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	reason := fs.String("reason", "set by operator", "why")
	pin := fs.Bool("pin", false, "the reputation loop leaves this state alone until --unpin")
	unpin := fs.Bool("unpin", false, "hand the tenant back to the reputation loop (keeps the state unless one is given)")
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if *pin && *unpin {
		return errors.New("ctl: tenant policy: --pin and --unpin together")
	}
	if len(pos) != 2 && !(*unpin && len(pos) == 1) {
		return errors.New("ctl: tenant policy ID STATE [--pin] | tenant policy ID --unpin")
	}
	if _, err := c.s.Get(ctx, pos[0]); err != nil {
		return err
	}
	cur, err := c.s.GetPolicy(ctx, pos[0])
	if err != nil {
		return err
	}
	p := tenant.Policy{State: cur.State, Reason: cur.Reason, Figures: cur.Figures, Since: cur.Since, By: "operator", Pinned: *pin}
	if len(pos) == 2 {
		st, err := tenant.ParseState(pos[1])
		if err != nil {
			return err
		}
		p = tenant.Policy{State: st, Reason: *reason, Since: time.Now().UTC(), By: "operator", Pinned: *pin}
	}
	if err := c.s.PutPolicy(ctx, pos[0], p); err != nil {
		return err
	}
	switch {
	case *pin:
		fmt.Fprintf(c.stdout, "tenant %s is now %s, pinned\n", pos[0], p.State)
	case *unpin:
		fmt.Fprintf(c.stdout, "tenant %s is %s, unpinned: the reputation loop decides again\n", pos[0], p.State)
	default:
		fmt.Fprintf(c.stdout, "tenant %s is now %s\n", pos[0], p.State)
	}
	return nil
}

func (c *ctl) domainAdd(ctx context.Context, id, domain string) error {
	t, err := c.s.Get(ctx, id)
	if err != nil {
		return err
	}
	if err := t.AddDomain(domain); err != nil {
		return err
	}
	if err := c.s.Put(ctx, t); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "tenant %s may now send from %s\n", id, strings.ToLower(domain))
	return nil
}

func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("read password: empty")
	}
	return pw, nil
}

func hashPassword(stdin io.Reader, stdout io.Writer) error {
	pw, err := readPassword(stdin)
	if err != nil {
		return err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	fmt.Fprintln(stdout, string(h))
	return nil
}
