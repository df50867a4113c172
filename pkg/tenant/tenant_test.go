package tenant

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/bustest"
)

func TestValidID(t *testing.T) {
	tests := []struct {
		give string
		ok   bool
	}{
		{"acme", true}, {"a-b_c9", true}, {"", false}, {"Acme", false}, {"a.b", false},
		{"a b", false}, {"-x", false}, {"x/y", false},
	}
	for _, tt := range tests {
		if err := ValidID(tt.give); (err == nil) != tt.ok {
			t.Errorf("ValidID(%q) = %v, want ok=%v", tt.give, err, tt.ok)
		}
	}
}

func TestPassword(t *testing.T) {
	var tn Tenant
	if err := tn.SetPassword("short"); err == nil {
		t.Error("SetPassword accepted a 5-character password")
	}
	if err := tn.SetPassword("long-enough-pw"); err != nil {
		t.Fatal(err)
	}
	if tn.PasswordHash == "long-enough-pw" || tn.PasswordHash == "" {
		t.Fatal("password stored in the clear")
	}
	if err := tn.CheckPassword("long-enough-pw"); err != nil {
		t.Errorf("right password: %v", err)
	}
	if err := tn.CheckPassword("wrong"); !errors.Is(err, ErrBadPassword) {
		t.Errorf("wrong password: %v, want ErrBadPassword", err)
	}
}

func TestDirectory_WatchesAndPicksMostSpecificRange(t *testing.T) {
	b := bustest.Start(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := Store{Tenants: b.Tenants, Policy: b.Policy}
	for _, tn := range []*Tenant{
		{ID: "wide", ClientIPs: []string{"10.0.0.0/8"}},
		{ID: "narrow", ClientIPs: []string{"10.1.2.0/24"}},
	} {
		if err := s.Create(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	d := NewDirectory()
	go d.Run(ctx, s, log)
	<-d.Ready()
	tests := []struct {
		ip   string
		want string
	}{{"10.1.2.3", "narrow"}, {"10.9.9.9", "wide"}, {"192.0.2.1", ""}}
	for _, tt := range tests {
		got := d.ByClientIP(netip.MustParseAddr(tt.ip))
		if (got == nil && tt.want != "") || (got != nil && got.ID != tt.want) {
			t.Errorf("ByClientIP(%s) = %v, want %q", tt.ip, got, tt.want)
		}
	}
	if p := d.Policy("wide"); p.State != StateGood {
		t.Errorf("policy of a tenant without one = %s, want good", p.State)
	}
	if err := s.PutPolicy(ctx, "wide", Policy{State: StateProbation, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for d.Policy("wide").State != StateProbation {
		if time.Now().After(deadline) {
			t.Fatal("policy change not seen by the watch")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
