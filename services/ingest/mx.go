package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/envelope"
)

// Mailboxes of the MX listener: what kind of report an address receives.
// The kind is the last element of the report's subject on the feedback
// stream.
const (
	MailboxBounce = "bounce"
	MailboxFBL    = "fbl"
	MailboxDMARC  = "dmarc"
)

// MXConfig is the MX listener: the inbound side of the platform, where
// receivers send asynchronous bounces, feedback-loop complaints and DMARC
// aggregate reports. It is not a mail server for anybody: it accepts mail
// only for its own addresses and domains, and never relays.
type MXConfig struct {
	// Addr is host:port to listen on (port 25 in production); empty
	// disables the listener.
	Addr string `yaml:"addr"`
	// BounceDomains receive bounces: any simple local part at these domains
	// (the VERP return paths bounces+TOKEN@domain, and postmaster@domain,
	// RFC 5321 4.5.1) is accepted.
	BounceDomains []string `yaml:"bounce_domains"`
	// FBLAddresses are the exact addresses registered with feedback loops
	// and published as abuse contacts; complaints arrive there.
	FBLAddresses []string `yaml:"fbl_addresses"`
	// DMARCAddress is the rua address published in the DMARC records of the
	// provider's and tenants' domains.
	DMARCAddress string `yaml:"dmarc_address"`
	// MaxMessageSize in bytes (SIZE, RFC 1870). Reports are small; DMARC
	// reports of big receivers are compressed.
	MaxMessageSize int64 `yaml:"max_message_size"`
	// MaxRecipients per transaction.
	MaxRecipients int `yaml:"max_recipients"`
	// RatePerMinute bounds the transactions one client IP may start per
	// minute (a burst of that size, then refilled evenly); beyond it MAIL
	// gets 451 4.7.1 and the client retries later.
	RatePerMinute int `yaml:"rate_per_minute"`
}

// DefaultMXConfig returns the defaults: disabled until addresses are set.
func DefaultMXConfig() MXConfig {
	return MXConfig{MaxMessageSize: 10 << 20, MaxRecipients: 20, RatePerMinute: 120}
}

// Validate names the first bad key.
func (c MXConfig) Validate() error {
	if c.Addr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("ingest.mx.addr: %w", err)
	}
	if len(c.BounceDomains) == 0 && len(c.FBLAddresses) == 0 && c.DMARCAddress == "" {
		return errors.New("ingest.mx.bounce_domains, fbl_addresses, dmarc_address: the MX listener needs at least one")
	}
	for i, d := range c.BounceDomains {
		if d == "" || strings.ContainsAny(d, "@ %!\"[]:,") || !strings.Contains(d, ".") {
			return fmt.Errorf("ingest.mx.bounce_domains[%d]: %q is not a domain name", i, d)
		}
	}
	for i, a := range c.FBLAddresses {
		if !plainAddress(a) {
			return fmt.Errorf("ingest.mx.fbl_addresses[%d]: %q is not a plain local@domain address", i, a)
		}
	}
	if c.DMARCAddress != "" && !plainAddress(c.DMARCAddress) {
		return fmt.Errorf("ingest.mx.dmarc_address: %q is not a plain local@domain address", c.DMARCAddress)
	}
	if c.MaxMessageSize < 1024 {
		return fmt.Errorf("ingest.mx.max_message_size: %d is too small", c.MaxMessageSize)
	}
	if c.MaxRecipients < 1 {
		return errors.New("ingest.mx.max_recipients: must be at least 1")
	}
	if c.RatePerMinute < 1 {
		return errors.New("ingest.mx.rate_per_minute: must be at least 1")
	}
	return nil
}

// Mailbox returns the kind of report rcpt receives, or "" when the listener
// must refuse it. Only plain dot-atom local parts qualify (RFC 5321 4.1.2):
// the percent hack (user%other@ours), bang paths (other!user@ours), quoted
// local parts hiding an @ ("user@other"@ours), several @ and IP literals are
// the classic ways to make an MX relay, and none of them is an address of
// ours. Source routes (@a,@b:user@c) reach us already stripped by go-smtp,
// as RFC 5321 4.1.1.3 and appendix C allow: what is left is judged alone.
func (c MXConfig) Mailbox(rcpt string) string {
	if !plainAddress(rcpt) {
		return ""
	}
	for _, a := range c.FBLAddresses {
		if strings.EqualFold(rcpt, a) {
			return MailboxFBL
		}
	}
	if c.DMARCAddress != "" && strings.EqualFold(rcpt, c.DMARCAddress) {
		return MailboxDMARC
	}
	domain := rcpt[strings.IndexByte(rcpt, '@')+1:]
	for _, d := range c.BounceDomains {
		if strings.EqualFold(domain, d) {
			return MailboxBounce
		}
	}
	return ""
}

// plainAddress reports whether a is local@domain with a local part of
// letters, digits and . _ + = - only, and a domain of letters, digits, dots
// and hyphens: nothing a relay hack could hide in.
func plainAddress(a string) bool {
	local, domain, ok := strings.Cut(a, "@")
	if !ok || local == "" || domain == "" || len(a) > 254 || strings.HasPrefix(local, ".") || strings.HasSuffix(local, ".") {
		return false
	}
	for _, c := range local {
		if !isAlnum(c) && !strings.ContainsRune("._+=-", c) {
			return false
		}
	}
	for _, c := range domain {
		if !isAlnum(c) && c != '.' && c != '-' {
			return false
		}
	}
	return !strings.HasPrefix(domain, ".") && !strings.HasSuffix(domain, ".") && strings.Contains(domain, ".")
}

func isAlnum(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// Replies of the MX listener.
var (
	errRelayDenied = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relay access denied"}
	errMXRate      = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Too many messages from your address, try again later"}
)

// mxServer is the running MX listener.
type mxServer struct {
	srv     *smtp.Server
	l       net.Listener
	limiter *rateLimiter
}

// listenMX binds the MX listener when one is configured.
func (s *Server) listenMX() error {
	c := s.cfg.MX
	if c.Addr == "" {
		return nil
	}
	mx := &mxServer{limiter: newRateLimiter(c.RatePerMinute)}
	mx.srv = smtp.NewServer(smtp.BackendFunc(func(conn *smtp.Conn) (smtp.Session, error) {
		return s.newMXSession(mx, conn), nil
	}))
	mx.srv.Domain = s.cfg.Hostname
	mx.srv.MaxMessageBytes = c.MaxMessageSize
	mx.srv.MaxRecipients = c.MaxRecipients
	mx.srv.ReadTimeout = s.cfg.ReadTimeout
	mx.srv.WriteTimeout = s.cfg.WriteTimeout
	mx.srv.EnableSMTPUTF8 = true
	mx.srv.ErrorLog = smtpLogger{s.log.With("listener", "mx")}
	l, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("listener mx: %w", err)
	}
	mx.l = l
	s.mx = mx
	return nil
}

// MXAddr returns the bound address of the MX listener after Listen, or "".
func (s *Server) MXAddr() string {
	if s.mx == nil {
		return ""
	}
	return s.mx.l.Addr().String()
}

// serveMX serves the MX listener (if any) in a goroutine counted in wg,
// reporting a failure on errc.
func (s *Server) serveMX(wg *sync.WaitGroup, errc chan<- error) {
	if s.mx == nil {
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.log.Info("mx listening", "addr", s.mx.l.Addr().String())
		if err := s.mx.srv.Serve(s.mx.l); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			select {
			case errc <- fmt.Errorf("serve mx: %w", err):
			default:
			}
		}
	}()
}

// shutdownMX stops the MX listener like the submission listeners: open
// sessions get until ctx ends, then are closed. A report whose 250 was not
// sent stays with the sending MTA, which retries.
func (s *Server) shutdownMX(ctx context.Context) {
	if s.mx == nil {
		return
	}
	if err := s.mx.srv.Shutdown(ctx); err != nil {
		s.mx.srv.Close()
	}
}

// mxSession is one connection to the MX listener. It offers no AUTH: nobody
// submits mail here.
type mxSession struct {
	s        *Server
	mx       *mxServer
	conn     *smtp.Conn
	clientIP netip.Addr
	ctx      context.Context
	cancel   context.CancelFunc

	from    string
	mailbox string
	rcpts   []string
}

func (s *Server) newMXSession(mx *mxServer, c *smtp.Conn) *mxSession {
	ctx, cancel := context.WithCancel(context.Background())
	ss := &mxSession{s: s, mx: mx, conn: c, ctx: ctx, cancel: cancel}
	if ap, err := netip.ParseAddrPort(c.Conn().RemoteAddr().String()); err == nil {
		ss.clientIP = ap.Addr().Unmap()
	}
	return ss
}

// Mail accepts any reverse path, the null one above all: bounces and most
// reports are sent with MAIL FROM:<> (RFC 5321 4.5.5).
func (ss *mxSession) Mail(from string, _ *smtp.MailOptions) error {
	if !ss.mx.limiter.allow(ss.clientIP, ss.s.now()) {
		ss.s.log.Info("mx rate limited", "client_ip", ss.clientIP)
		return errMXRate
	}
	ss.from = from
	return nil
}

// Rcpt refuses every address that is not one of ours: relay denied (RFC
// 5321 3.6.2: relaying is for those we agreed to relay for, nobody here).
func (ss *mxSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	mb := ss.s.cfg.MX.Mailbox(to)
	if mb == "" {
		ss.s.log.Info("mx relay denied", "client_ip", ss.clientIP, "rcpt", to)
		return errRelayDenied
	}
	if ss.mailbox == "" {
		ss.mailbox = mb
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

// Data spools the report and answers 250 only after JetStream has it.
func (ss *mxSession) Data(r io.Reader) error {
	if len(ss.rcpts) == 0 {
		return errNeedRecipient
	}
	var raw bytes.Buffer
	if _, err := raw.ReadFrom(r); err != nil {
		return err // go-smtp maps ErrDataTooLarge to 552 5.3.4
	}
	env := &envelope.Envelope{
		ID:       envelope.NewID(),
		From:     ss.from,
		Rcpts:    append([]string(nil), ss.rcpts...),
		Received: ss.s.now(),
		ClientIP: ss.clientIP.String(),
	}
	body := ss.received(env, raw.Bytes())
	env.Size = int64(len(body))
	ctx := context.WithoutCancel(ss.ctx)
	if err := ss.s.bus.PublishMessage(ctx, bus.SubjectFeedback+"."+ss.mailbox, env.ID, env, body); err != nil {
		ss.s.log.Error("spool report", "report_id", env.ID, "mailbox", ss.mailbox, "err", err)
		return errSpoolDown
	}
	ss.s.log.Debug("report accepted", "report_id", env.ID, "mailbox", ss.mailbox, "client_ip", ss.clientIP, "size", env.Size)
	return nil
}

// received prepends the trace header (RFC 5321 4.4) that records where the
// report came from, for whoever inspects a report that failed to parse.
func (ss *mxSession) received(env *envelope.Envelope, raw []byte) []byte {
	helo := ss.conn.Hostname()
	if helo == "" {
		helo = "unknown"
	}
	var b bytes.Buffer
	b.Grow(len(raw) + 256)
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s (Outflow MX) with ESMTP id %s;\r\n\t%s\r\n",
		sanitize(helo), env.ClientIP, ss.s.cfg.Hostname, env.ID,
		env.Received.UTC().Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	b.Write(raw)
	return b.Bytes()
}

func (ss *mxSession) Reset() {
	ss.from, ss.mailbox = "", ""
	ss.rcpts = ss.rcpts[:0]
}

func (ss *mxSession) Logout() error {
	ss.cancel()
	return nil
}

// rateLimiter is a token bucket per client IP: burst perMinute, refilled at
// perMinute a minute. Idle buckets are forgotten so that the map stays
// small under a scan.
type rateLimiter struct {
	perMinute float64
	mu        sync.Mutex
	buckets   map[netip.Addr]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(perMinute int) *rateLimiter {
	return &rateLimiter{perMinute: float64(perMinute), buckets: map[netip.Addr]*bucket{}}
}

func (r *rateLimiter) allow(ip netip.Addr, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.lastSweep) > time.Minute {
		// A bucket idle for a minute is full again: dropping it changes
		// nothing.
		for k, b := range r.buckets {
			if now.Sub(b.last) > time.Minute {
				delete(r.buckets, k)
			}
		}
		r.lastSweep = now
	}
	b, ok := r.buckets[ip]
	if !ok {
		b = &bucket{tokens: r.perMinute, last: now}
		r.buckets[ip] = b
	}
	b.tokens = min(r.perMinute, b.tokens+now.Sub(b.last).Minutes()*r.perMinute)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
