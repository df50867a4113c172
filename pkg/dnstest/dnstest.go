// Package dnstest runs a real DNS server on loopback UDP for tests, answering
// from records the test adds (MX, A, AAAA, TXT, or any record in zone-file
// syntax). Delivery, and later MTA-STS, DANE and DNSBL code, are pointed at it
// through their resolver address, so they are tested over real DNS packets.
package dnstest

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Server answers queries authoritatively from the records added to it. A
// name with no record at all is NXDOMAIN; a name with records of other types
// only is an empty NOERROR answer (NODATA, RFC 2308 2.2).
type Server struct {
	// Addr is the host:port to give a resolver.
	Addr string

	srv     *dns.Server
	queries atomic.Int64

	mu      sync.Mutex
	records map[string][]dns.RR // by lower-cased FQDN
	rcodes  map[rcodeKey]int
	secure  map[string]bool // names answered with the AD bit
}

type rcodeKey struct {
	name  string
	qtype uint16
}

// Start runs a server on 127.0.0.1 on a free UDP port and stops it when the
// test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("dnstest: listen: %v", err)
	}
	s := &Server{
		Addr:    pc.LocalAddr().String(),
		records: map[string][]dns.RR{},
		rcodes:  map[rcodeKey]int{},
		secure:  map[string]bool{},
	}
	started := make(chan struct{})
	s.srv = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serve), NotifyStartedFunc: func() { close(started) }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.srv.ActivateAndServe()
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		tb.Fatal("dnstest: server did not start")
	}
	tb.Cleanup(func() {
		_ = s.srv.Shutdown()
		<-done
	})
	return s
}

// Add adds records written in zone-file syntax, one per string, such as
// "example.net. 300 IN MX 10 mx1.example.net.". Names without a trailing dot
// are taken as fully qualified.
func (s *Server) Add(tb testing.TB, records ...string) {
	tb.Helper()
	for _, text := range records {
		rr, err := dns.NewRR(text)
		if err != nil || rr == nil {
			tb.Fatalf("dnstest: record %q: %v", text, err)
		}
		s.addRR(rr)
	}
}

// AddMX publishes an MX record of domain. Host "." is a null MX (RFC 7505).
func (s *Server) AddMX(domain string, pref uint16, host string) {
	s.addRR(&dns.MX{Hdr: hdr(domain, dns.TypeMX), Preference: pref, Mx: dns.Fqdn(host)})
}

// AddAddr publishes A or AAAA records of host, by the family of each address.
func (s *Server) AddAddr(host string, addrs ...string) {
	for _, a := range addrs {
		ip := netip.MustParseAddr(a)
		if ip.Is4() {
			s.addRR(&dns.A{Hdr: hdr(host, dns.TypeA), A: ip.AsSlice()})
		} else {
			s.addRR(&dns.AAAA{Hdr: hdr(host, dns.TypeAAAA), AAAA: ip.AsSlice()})
		}
	}
}

// AddTXT publishes one TXT record of name made of the given strings.
func (s *Server) AddTXT(name string, txt ...string) {
	s.addRR(&dns.TXT{Hdr: hdr(name, dns.TypeTXT), Txt: txt})
}

// Fail makes queries for name and qtype (dns.TypeMX, ...) answer rcode, such
// as dns.RcodeServerFailure, instead of the records.
func (s *Server) Fail(name string, qtype uint16, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcodes[rcodeKey{key(name), qtype}] = rcode
}

// Secure makes answers for names carry the AD bit, as a validating
// resolver's do for DNSSEC-signed data, when the query asks for it with the
// DO or AD bit (RFC 6840 5.7). No signature is served: clients trust the
// resolver's word, which is what DANE tests need.
func (s *Server) Secure(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		s.secure[key(n)] = true
	}
}

// Queries is how many queries the server has answered.
func (s *Server) Queries() int { return int(s.queries.Load()) }

func (s *Server) addRR(rr dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key(rr.Header().Name)
	s.records[k] = append(s.records[k], rr)
}

func (s *Server) serve(w dns.ResponseWriter, q *dns.Msg) {
	s.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	if len(q.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	question := q.Question[0]
	name := key(question.Name)
	s.mu.Lock()
	rcode, failing := s.rcodes[rcodeKey{name, question.Qtype}]
	rrs, exists := s.records[name]
	opt := q.IsEdns0()
	m.AuthenticatedData = s.secure[name] && (q.AuthenticatedData || (opt != nil && opt.Do()))
	for _, rr := range rrs {
		if rr.Header().Rrtype == question.Qtype {
			m.Answer = append(m.Answer, dns.Copy(rr))
		}
	}
	s.mu.Unlock()
	switch {
	case failing:
		m.Answer = nil
		m.Rcode = rcode
	case !exists:
		m.Rcode = dns.RcodeNameError
	}
	// Honour the client's EDNS0 buffer size (RFC 6891 6.2.5) so that large
	// answers are truncated, as a real server would, rather than dropped.
	size := dns.MinMsgSize
	if opt != nil {
		size = int(opt.UDPSize())
		m.SetEdns0(opt.UDPSize(), opt.Do())
	}
	m.Truncate(size)
	_ = w.WriteMsg(m)
}

func hdr(name string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: dns.Fqdn(name), Rrtype: rrtype, Class: dns.ClassINET, Ttl: 300}
}

func key(name string) string { return strings.ToLower(dns.Fqdn(name)) }
