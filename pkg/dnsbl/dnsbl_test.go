package dnsbl

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/outflowmail/outflow/pkg/dnstest"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/natstest"
	"github.com/outflowmail/outflow/pkg/pool"
	"github.com/outflowmail/outflow/pkg/shaping"
)

func TestQueryName(t *testing.T) {
	tests := []struct {
		give, zone, want string
	}{
		{"192.0.2.99", "zen.example", "99.2.0.192.zen.example."},
		{"127.0.0.2", "bl.example.", "2.0.0.127.bl.example."},
		// RFC 5782 2.4's example.
		{"2001:db8:1:2:3:4:567:89ab", "ugly.example.com", "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com."},
	}
	for _, tt := range tests {
		if got := QueryName(netip.MustParseAddr(tt.give), tt.zone); got != tt.want {
			t.Errorf("QueryName(%s, %s) = %s, want %s", tt.give, tt.zone, got, tt.want)
		}
	}
}

// zone serves bl.test: 127.0.0.2 listed (127.0.0.3, with a reason),
// 127.0.0.4 answered with Spamhaus' "refused" code, 127.0.0.5 failing,
// 127.0.0.6 answered outside 127/8, 127.0.0.7 NODATA; others NXDOMAIN.
func zone(t *testing.T) *dnstest.Server {
	t.Helper()
	s := dnstest.Start(t)
	s.Add(t,
		"2.0.0.127.bl.test. 300 IN A 127.0.0.3",
		`2.0.0.127.bl.test. 300 IN TXT "listed for sending spam, see https://bl.test/127.0.0.2"`,
		"4.0.0.127.bl.test. 300 IN A 127.255.255.254",
		"5.0.0.127.bl.test. 300 IN A 127.0.0.2",
		"6.0.0.127.bl.test. 300 IN A 192.0.2.1",
		`7.0.0.127.bl.test. 300 IN TXT "no A record"`,
	)
	s.Fail("5.0.0.127.bl.test", dns.TypeA, dns.RcodeServerFailure)
	return s
}

func TestLookup(t *testing.T) {
	s := zone(t)
	r := Resolver{Addr: s.Addr, Timeout: 2 * time.Second}
	tests := []struct {
		give    string
		want    Result
		wantErr error
	}{
		{"127.0.0.2", Result{Listed: true, Answer: "127.0.0.3", Reason: "listed for sending spam, see https://bl.test/127.0.0.2"}, nil},
		{"127.0.0.3", Result{}, nil},
		{"127.0.0.4", Result{}, ErrRefused},
		{"127.0.0.5", Result{}, errors.New("SERVFAIL")},
		{"127.0.0.6", Result{}, ErrUnexpected},
		{"127.0.0.7", Result{}, nil},
	}
	for _, tt := range tests {
		got, err := r.Lookup(context.Background(), netip.MustParseAddr(tt.give), "bl.test")
		switch {
		case tt.wantErr == nil && err != nil:
			t.Errorf("Lookup(%s) error %v", tt.give, err)
		case tt.wantErr != nil && err == nil:
			t.Errorf("Lookup(%s) = %+v, want error %v", tt.give, got, tt.wantErr)
		case tt.wantErr != nil && !errors.Is(err, tt.wantErr) && !strings.Contains(err.Error(), tt.wantErr.Error()):
			t.Errorf("Lookup(%s) error %v, want %v", tt.give, err, tt.wantErr)
		case got != tt.want:
			t.Errorf("Lookup(%s) = %+v, want %+v", tt.give, got, tt.want)
		}
	}
}

// TestMonitor_ListedIPLeavesRotationAndReturns: a listed pool address
// leaves rotation for every site, with a dnsbl event; an address whose
// lookup fails is not taken for listed; once delisted the address comes
// back, with another event.
func TestMonitor_ListedIPLeavesRotationAndReturns(t *testing.T) {
	dnsSrv := zone(t)
	js := natstest.JetStream(t)
	ctx := context.Background()
	sh, err := shaping.New(ctx, shaping.Options{Config: shaping.DefaultConfig(), JS: js})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sh.Close)
	kv, err := shaping.Bucket(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var evs []*events.Event
	cfg := DefaultConfig()
	cfg.Zones = []string{"bl.test"}
	cfg.Resolver = dnsSrv.Addr
	ips := []pool.IP{{Address: "127.0.0.2"}, {Address: "127.0.0.3"}, {Address: "127.0.0.5"}}
	m, err := New(Options{
		Config: cfg, KV: kv, IPs: []string{"127.0.0.2", "127.0.0.3", "127.0.0.5"},
		Publish: func(_ context.Context, e *events.Event) error {
			mu.Lock()
			defer mu.Unlock()
			evs = append(evs, e)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	sources := func(site string) []string {
		usable, _ := sh.Sources(site, ips)
		var out []string
		for _, ip := range usable {
			out = append(out, ip.Address)
		}
		return out
	}
	without := func(site string) bool {
		got := sources(site)
		return len(got) == 2 && !slices.Contains(got, "127.0.0.2")
	}

	m.Check(ctx)
	for _, site := range []string{"google", "outlook", "mx.example"} {
		waitFor(t, "127.0.0.2 still in rotation for "+site, func() bool { return without(site) })
	}
	mu.Lock()
	if len(evs) != 1 || evs[0].Type != events.TypeDNSBL || !evs[0].DNSBL.Listed || evs[0].DNSBL.IP != "127.0.0.2" ||
		evs[0].DNSBL.Answer != "127.0.0.3" || evs[0].DNSBL.Reason == "" {
		t.Fatalf("events after listing: %+v", evs)
	}
	mu.Unlock()
	_, until := sh.Sources("google", ips[:1])
	if until.Before(time.Now().Add(cfg.Interval - time.Minute)) {
		t.Errorf("until %v for a listed IP alone, want about the next check (%v)", until, cfg.Interval)
	}

	// A second round with nothing changed publishes nothing new.
	m.Check(ctx)
	// Delisted: the zone answers NXDOMAIN.
	dnsSrv.Fail("2.0.0.127.bl.test", dns.TypeA, dns.RcodeNameError)
	m.Check(ctx)
	waitFor(t, "127.0.0.2 not back in rotation", func() bool { return len(sources("google")) == 3 })
	mu.Lock()
	defer mu.Unlock()
	if len(evs) != 2 || evs[1].DNSBL.Listed || evs[1].DNSBL.IP != "127.0.0.2" {
		t.Fatalf("events after delisting: %d, last %+v", len(evs), evs[len(evs)-1].DNSBL)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		give    func(*Config)
		wantKey string
	}{
		{"defaults", func(*Config) {}, ""},
		{"zones", func(c *Config) { c.Zones = []string{"zen.spamhaus.org", "bl.spamcop.net"} }, ""},
		{"bad zone", func(c *Config) { c.Zones = []string{"not a zone"} }, "sender.dnsbl.zones[0]"},
		{"interval", func(c *Config) { c.Interval = 0 }, "sender.dnsbl.interval"},
		{"timeout", func(c *Config) { c.Timeout = -time.Second }, "sender.dnsbl.timeout"},
		{"resolver", func(c *Config) { c.Resolver = "127.0.0.1" }, "sender.dnsbl.resolver"},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		tt.give(&c)
		err := c.Validate()
		if (tt.wantKey == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantKey)) {
			t.Errorf("%s: Validate() = %v, want error naming %q", tt.name, err, tt.wantKey)
		}
	}
}
