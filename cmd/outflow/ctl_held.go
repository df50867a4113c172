package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/held"
)

// heldCtl is "outflow ctl held list|release|purge TENANT": a suspended
// tenant's mail the router held (docs/analytics.md, "States and rules").
func heldCtl(ctx context.Context, b *bus.Bus, args []string, stdout io.Writer) error {
	if len(args) != 2 {
		return errors.New("ctl: held list|release|purge TENANT")
	}
	id := args[1]
	switch args[0] {
	case "list":
		hs, err := held.List(ctx, b, id)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintln(w, "HELD\tMSG_ID\tFROM\tRCPTS\tSIZE")
		for _, h := range hs {
			e := h.Envelope
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\n", h.Held.UTC().Format(time.RFC3339), e.ID, e.From, len(e.Rcpts), e.Size)
		}
		if err := w.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d held messages of %s\n", len(hs), id)
		return nil
	case "release":
		n, err := held.Release(ctx, b, id)
		fmt.Fprintf(stdout, "released %d held messages of %s to routing\n", n, id)
		return err
	case "purge":
		n, err := held.Purge(ctx, b, id)
		fmt.Fprintf(stdout, "purged %d held messages of %s\n", n, id)
		return err
	}
	return fmt.Errorf("ctl: held %q: want list, release or purge", args[0])
}
