package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/outflowmail/outflow/app"
	chqueries "github.com/outflowmail/outflow/deploy/clickhouse/queries"
	"github.com/outflowmail/outflow/pkg/chstore"
)

const analyticsUsage = `usage: outflow ctl [-config FILE] trace [--clickhouse ADDR] MESSAGE_ID
       outflow ctl [-config FILE] migrate [--clickhouse ADDR] [--dry-run]
       outflow ctl [-config FILE] query [--clickhouse ADDR] [NAME [--param NAME=VALUE ...]]`

// analyticsCommand reports whether cmd is one of the ClickHouse commands,
// which need the analytics configuration and no NATS connection.
func analyticsCommand(cmd string) bool {
	return cmd == "trace" || cmd == "migrate" || cmd == "query"
}

// analyticsCtl runs "ctl trace|migrate|query" against the ClickHouse of the
// configuration (analytics.clickhouse), or of --clickhouse.
func analyticsCtl(ctx context.Context, configPath string, args []string, stdout io.Writer) error {
	cmd := args[0]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := fs.String("clickhouse", "", "ClickHouse native address host:port (default: the config's analytics.clickhouse.addr)")
	dryRun := fs.Bool("dry-run", false, "migrate: print what would be applied, change nothing")
	var params multiFlag
	fs.Var(&params, "param", "query: a parameter NAME=VALUE (repeatable)")
	// Flags may come before, between and after the positional arguments.
	var pos []string
	for rest := args[1:]; ; rest = fs.Args()[1:] {
		if err := fs.Parse(rest); err != nil {
			return fmt.Errorf("ctl %s: %w\n%s", cmd, err, analyticsUsage)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
	}
	cfg := chstore.DefaultConfig()
	if configPath != "" {
		c, err := app.Load(configPath)
		if err != nil {
			return err
		}
		cfg = c.Analytics.ClickHouse
	}
	if *addr != "" {
		cfg.Addr = *addr
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout+cfg.QueryTimeout)
	defer cancel()
	s, err := chstore.Open(cctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	switch {
	case cmd == "trace" && len(pos) == 1:
		return trace(cctx, s, pos[0], stdout)
	case cmd == "migrate" && len(pos) == 0:
		return migrate(cctx, s, *dryRun, stdout)
	case cmd == "query" && len(pos) == 0:
		return listQueries(stdout)
	case cmd == "query" && len(pos) == 1:
		return runQuery(cctx, s, pos[0], params, stdout)
	}
	return errors.New(analyticsUsage)
}

// trace prints everything ClickHouse holds about one message.
func trace(ctx context.Context, s *chstore.Store, id string, stdout io.Writer) error {
	q, err := chqueries.Get("message_trace")
	if err != nil {
		return err
	}
	res, err := q.Run(ctx, s.Conn(), map[string]string{"id": id})
	if err != nil {
		return err
	}
	if len(res.Rows) == 0 {
		return fmt.Errorf("ctl trace: no message %q in ClickHouse (neither a msg_id nor a Message-ID)", id)
	}
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	last := ""
	for _, r := range res.Rows { // time, msg_id, step, detail
		if r[1] != last {
			fmt.Fprintf(w, "message %s\n", r[1])
			last = r[1]
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\n", r[0], r[2], r[3])
	}
	return w.Flush()
}

// migrate prints the server, the applied and the pending migrations, and
// applies the pending ones unless dryRun.
func migrate(ctx context.Context, s *chstore.Store, dryRun bool, stdout io.Writer) error {
	st, err := s.Status(ctx)
	if err != nil {
		return err
	}
	f := st.Features
	fmt.Fprintf(stdout, "clickhouse %s: ttl=%v low_cardinality=%v datetime64=%v retention_days=%d rollup_retention_days=%d\n",
		f.Version, f.TTL, f.LowCardinality, f.DateTime64, f.RetentionDays, f.RollupRetentionDays)
	fmt.Fprintf(stdout, "applied: %s\n", versions(st.Applied))
	if len(st.Pending) == 0 {
		fmt.Fprintln(stdout, "pending: none")
		return nil
	}
	for _, m := range st.Pending {
		fmt.Fprintf(stdout, "pending: %s (%d statements)\n", m.Name, len(m.Statements()))
		if dryRun {
			for _, stmt := range m.Statements() {
				fmt.Fprintf(stdout, "%s;\n\n", stmt)
			}
		}
	}
	if dryRun {
		fmt.Fprintln(stdout, "dry run: nothing applied")
		return nil
	}
	start := time.Now()
	done, err := s.MigrateReport(ctx)
	for _, m := range done {
		fmt.Fprintf(stdout, "applied %s\n", m.Name)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d migrations applied in %v\n", len(done), time.Since(start).Round(time.Millisecond))
	return nil
}

func versions(vs []int) string {
	if len(vs) == 0 {
		return "none"
	}
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, " ")
}

// listQueries prints the analyst queries with their titles and parameters.
func listQueries(stdout io.Writer) error {
	qs, err := chqueries.All()
	if err != nil {
		return err
	}
	for _, q := range qs {
		fmt.Fprintf(stdout, "%s\t%s\n", q.Name, q.Title)
		for _, p := range q.Params {
			fmt.Fprintf(stdout, "\t--param %s=%s\t%s\n", p.Name, p.Type, p.Doc)
		}
	}
	return nil
}

func runQuery(ctx context.Context, s *chstore.Store, name string, params []string, stdout io.Writer) error {
	q, err := chqueries.Get(name)
	if err != nil {
		return fmt.Errorf("ctl query: %w (outflow ctl query lists them)", err)
	}
	values := map[string]string{}
	for _, p := range params {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return fmt.Errorf("ctl query: --param %q: want NAME=VALUE", p)
		}
		values[k] = v
	}
	res, err := q.Run(ctx, s.Conn(), values)
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, res.Table())
	return err
}
