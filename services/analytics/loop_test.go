//go:build integration

package analytics

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/chtest"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/tenant"
)

// TestLoop_ChangesWrittenOnce runs the ticks of two loops (two analytics
// processes) against a real ClickHouse and KV bucket: a spamming tenant is
// suspended once (one KV revision, one policy_changes row, however many
// ticks and loops), a clean tenant and
// a pinned spammer are left alone, and after the cool-down without mail the
// spammer steps down, each step one more row.
func TestLoop_ChangesWrittenOnce(t *testing.T) {
	ch := chtest.Start(t)
	b := connectBus(t)
	cfg := testConfig(ch.Addr())
	store := openStore(t, cfg.ClickHouse)
	ctx := context.Background()
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Truncate(time.Second)
	var evs []*events.Event
	for _, tn := range []string{"spammer", "clean", "pinned"} {
		for i := range 40 {
			label := "ham"
			if tn != "clean" && i%2 == 0 {
				label = "spam"
			}
			id := fmt.Sprintf("%s-%d", tn, i)
			v := events.Verdict{Label: label, Score: 0.5, Model: "m"}
			evs = append(evs,
				&events.Event{ID: id + ".verdict", Type: events.TypeVerdict, Time: at, Tenant: tn, MsgID: id, Verdict: &v},
				&events.Event{ID: id + ".routed", Type: events.TypeRouted, Time: at, Tenant: tn, MsgID: id,
					Routed: &events.Routed{Rcpts: []string{"r@x.example"}, Received: at, Verdict: v, Pool: "shared"}})
		}
	}
	if err := store.Insert(ctx, evs); err != nil {
		t.Fatal(err)
	}
	pinned := tenant.Policy{State: tenant.StateGood, Pinned: true, By: "operator", Since: at}
	pb, _ := json.Marshal(pinned)
	if _, err := b.Policy.Put(ctx, "pinned", pb); err != nil {
		t.Fatal(err)
	}
	// The spammer has an (unpinned) operator policy already: its change is
	// an Update on that revision, which only one of two loops can make.
	ob, _ := json.Marshal(tenant.Policy{State: tenant.StateGood, By: "operator", Since: at})
	if _, err := b.Policy.Put(ctx, "spammer", ob); err != nil {
		t.Fatal(err)
	}

	rc := DefaultReputationConfig()
	rc.Windows = []time.Duration{time.Minute}
	rc.Rules.SpamRatio.Floor = 20
	rc.Rules.CoolDown = time.Minute
	now := at
	l := &loop{cfg: rc, conn: store.Conn(), policy: b.Policy, log: testLogger(t), now: func() time.Time { return now }}
	// A second analytics process's loop deciding at the same moments: the
	// KV compare-and-set lets one of them make each change.
	l2 := &loop{cfg: rc, conn: store.Conn(), policy: b.Policy, log: testLogger(t), now: func() time.Time { return now }}
	for range 3 {
		errs := make(chan error, 2)
		go func() { errs <- l.tick(ctx) }()
		go func() { errs <- l2.tick(ctx) }()
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
	state := func(id string) (tenant.Policy, uint64) {
		t.Helper()
		e, err := b.Policy.Get(ctx, id)
		if err != nil {
			return tenant.Policy{}, 0
		}
		var p tenant.Policy
		if err := json.Unmarshal(e.Value(), &p); err != nil {
			t.Fatal(err)
		}
		return p, e.Revision()
	}
	p, _ := state("spammer")
	if p.State != tenant.StateSuspended || p.By != LoopBy || p.Figures["spam_ratio_1m0s"] != 0.5 {
		t.Fatalf("spammer policy = %+v, want suspended by the loop with spam_ratio_1m0s 0.5", p)
	}
	if p, rev := state("clean"); rev != 0 {
		t.Errorf("clean tenant got a policy: %+v", p)
	}
	if p, _ := state("pinned"); p.State != tenant.StateGood || !p.Pinned {
		t.Errorf("pinned tenant = %+v, want good and pinned", p)
	}
	rows := func() string {
		t.Helper()
		r, err := store.Conn().Query(ctx, "SELECT tenant, from_state, to_state, rule, window_seconds FROM policy_changes FINAL ORDER BY time, to_state DESC")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		out := ""
		for r.Next() {
			var tn, from, to, rule string
			var w uint32
			if err := r.Scan(&tn, &from, &to, &rule, &w); err != nil {
				t.Fatal(err)
			}
			out += fmt.Sprintf("%s %s→%s %s %d;", tn, from, to, rule, w)
		}
		return out
	}
	if got, want := rows(), "spammer good→suspended spam_ratio 60;"; got != want {
		t.Fatalf("policy_changes = %q, want %q", got, want)
	}

	// Three minutes on the window is empty and the cool-down over: one
	// step to good (nothing holds it), one row more.
	now = at.Add(3 * time.Minute)
	for range 2 {
		if err := l.tick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if p, _ := state("spammer"); p.State != tenant.StateGood {
		t.Errorf("spammer after the cool-down = %+v, want good", p)
	}
	if got, want := rows(), "spammer good→suspended spam_ratio 60;spammer suspended→good recovered 0;"; got != want {
		t.Errorf("policy_changes = %q, want %q", got, want)
	}
}
