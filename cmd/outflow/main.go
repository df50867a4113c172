// Command outflow is the single binary of the Outflow outbound mail platform.
// Each role (ingest, classifier, router, sender, analytics, feedback) runs as a
// subcommand; "all" runs every role in one process with an embedded NATS server.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "outflow:", err)
		os.Exit(1)
	}
}

const usage = `usage: outflow <command> [flags]

Roles take -config FILE (default deploy/local/outflow.yaml) and -nats URL.

commands:
  all          run every role in one process with an embedded NATS server
  nats         run only the embedded NATS server (for separate role processes)
  ingest       SMTP submission (and MX) listener
  classifier   score submitted messages
  router       choose an IP pool for each message
  sender       deliver messages over SMTP
  analytics    load events into ClickHouse
  feedback     parse bounces, complaints and DMARC reports from the MX listener
  ctl          operator tool (tenants, policy, domains)
  classify     score message files and print one JSON verdict per message
  classifier train   rebuild the embedded spam model from a corpus
  bounce parse [FILE...]  parse bounces (DSNs) to JSON, one object per file
  complaint parse [FILE...]  parse ARF complaints to JSON, one object per file
  dmarc parse [FILE...]  parse DMARC aggregate reports to JSON, one object per file
  version      print the version
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("no command given")
	}
	switch args[0] {
	case "classify":
		return runClassify(ctx, args[1:], stdin, stdout, stderr)
	case "classifier":
		if len(args) > 1 && args[1] == "train" {
			return runClassifierTrain(ctx, args[2:], stdout, stderr)
		}
		return runRole(ctx, "classifier", args[1:], stderr)
	case "all", "nats", "ingest", "router", "sender", "analytics", "feedback":
		return runRole(ctx, args[0], args[1:], stderr)
	case "bounce":
		return runBounce(ctx, args[1:], stdin, stdout, stderr)
	case "complaint":
		return runComplaint(ctx, args[1:], stdin, stdout, stderr)
	case "dmarc":
		return runDMARC(ctx, args[1:], stdin, stdout, stderr)
	case "ctl":
		return runCtl(ctx, args[1:], stdin, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "outflow", version)
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"
