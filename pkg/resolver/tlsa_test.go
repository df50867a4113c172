package resolver

import (
	"errors"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/outflowmail/outflow/pkg/dnstest"
)

func TestResolver_TLSA(t *testing.T) {
	ds := dnstest.Start(t)
	const rec = "3 1 1 0c72ac70b745ac19998811b131d662c9ac69dbdbe7cb23e5b514b56664c5d3d6"
	ds.Add(t, "_25._tcp.signed.example. 300 IN TLSA "+rec, "_25._tcp.unsigned.example. 300 IN TLSA "+rec)
	ds.Secure("_25._tcp.signed.example")
	ds.Add(t, "_25._tcp.bogus.example. 300 IN TLSA "+rec)
	ds.Fail("_25._tcp.bogus.example", dns.TypeTLSA, dns.RcodeServerFailure)
	r, err := New(ds.Addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		wantN      int
		wantSecure bool
		wantErr    error
	}{
		{"_25._tcp.signed.example", 1, true, nil},
		{"_25._tcp.unsigned.example", 1, false, nil},
		{"_25._tcp.missing.example", 0, false, nil},
		{"_25._tcp.bogus.example", 0, false, ErrServFail},
	}
	for _, tt := range tests {
		recs, secure, err := r.TLSA(t.Context(), tt.name)
		if len(recs) != tt.wantN || secure != tt.wantSecure || !errors.Is(err, tt.wantErr) {
			t.Errorf("TLSA(%s) = %d records, secure %v, %v; want %d, %v, %v", tt.name, len(recs), secure, err, tt.wantN, tt.wantSecure, tt.wantErr)
		}
		if tt.wantN == 1 && (recs[0].Usage != 3 || recs[0].Selector != 1 || recs[0].MatchingType != 1) {
			t.Errorf("TLSA(%s) = %v, want %s", tt.name, recs[0], rec)
		}
	}
}
