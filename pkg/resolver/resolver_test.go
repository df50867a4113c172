package resolver

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/outflowmail/outflow/pkg/dnstest"
)

func TestResolver_Lookups(t *testing.T) {
	ds := dnstest.Start(t)
	ds.AddMX("example.net", 20, "mx2.example.net")
	ds.AddMX("example.net", 10, "mx1.example.net")
	ds.AddAddr("mx1.example.net", "192.0.2.1", "2001:db8::1")
	ds.AddTXT("example.net", "v=spf1 ", "-all")
	ds.AddTXT("failing.example.net", "x")
	ds.Fail("failing.example.net", dns.TypeA, dns.RcodeServerFailure)
	r, err := New(ds.Addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	mxs, err := r.MX(ctx, "example.net")
	if err != nil || len(mxs) != 2 || mxs[0].Host != "mx2.example.net." || mxs[1].Pref != 10 {
		t.Errorf("MX(example.net) = %v, %v; want both records as received", mxs, err)
	}
	if mxs, err := r.MX(ctx, "mx1.example.net"); err != nil || len(mxs) != 0 {
		t.Errorf("MX(mx1.example.net) = %v, %v; want none, no error (NODATA)", mxs, err)
	}
	addrs, err := r.Addrs(ctx, "mx1.example.net")
	want := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}
	if err != nil || !slices.Equal(addrs, want) {
		t.Errorf("Addrs(mx1.example.net) = %v, %v; want %v", addrs, err, want)
	}
	if txt, err := r.TXT(ctx, "example.net"); err != nil || !slices.Equal(txt, []string{"v=spf1 -all"}) {
		t.Errorf("TXT(example.net) = %q, %v; want the strings joined", txt, err)
	}
	tests := []struct {
		name    string
		lookup  func() error
		wantErr error
	}{
		{"MX of a missing name", func() error { _, err := r.MX(ctx, "nowhere.example"); return err }, ErrNXDomain},
		{"address of a missing name", func() error { _, err := r.Addrs(ctx, "nowhere.example"); return err }, ErrNXDomain},
		{"address lookup failing", func() error { _, err := r.Addrs(ctx, "failing.example.net"); return err }, ErrServFail},
	}
	for _, tt := range tests {
		if err := tt.lookup(); !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.wantErr)
		}
	}
}

func TestResolver_ServerDownIsTemporary(t *testing.T) {
	r, err := New("127.0.0.1:1", 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.MX(context.Background(), "example.net"); !errors.Is(err, ErrServFail) || errors.Is(err, ErrNXDomain) {
		t.Errorf("MX with no server = %v, want ErrServFail", err)
	}
}

func ExampleNew() {
	r, err := New("127.0.0.53:53", 5*time.Second)
	if err != nil {
		panic(err)
	}
	mxs, err := r.MX(context.Background(), "example.net")
	switch {
	case errors.Is(err, ErrNXDomain):
		// the domain does not exist: a permanent failure for mail
	case err != nil:
		// try again later
	default:
		_ = mxs
	}
}
