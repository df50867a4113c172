package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/outflowmail/outflow/app"
)

// runRole runs one role, "all", or the standalone embedded NATS server.
func runRole(ctx context.Context, role string, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet(role, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "deploy/local/outflow.yaml", "configuration file")
	natsURL := fs.String("nats", "", "NATS server URL (overrides nats.url)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", role, fs.Arg(0))
	}
	cfg, err := app.Load(*configPath)
	if err != nil {
		return err
	}
	if *natsURL != "" {
		cfg.NATS.URL = *natsURL
	}
	log := app.NewLogger(cfg.Log)
	switch role {
	case "all":
		return app.RunAll(ctx, cfg, log)
	case "nats":
		return app.RunNATS(ctx, cfg, log)
	}
	return app.Run(ctx, cfg, []string{role}, log.With("process", role))
}
