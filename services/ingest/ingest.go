// Package ingest is the submission role: tenants hand mail to it over SMTP
// (AUTH, or a client IP range that identifies them). It checks the tenant,
// its policy and its sender domain, adds trace headers, and answers 250 only
// after JetStream has acknowledged the message on the submitted stream; any
// failure before that is a 451 so that the tenant keeps the message and
// retries.
package ingest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/tenant"
)

// Replies of the submission service, by RFC 3463 enhanced status.
var (
	errAuthInvalid   = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
	errAuthRequired  = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	errSpoolDown     = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Queue unavailable, try again later"}
	errBadMechanism  = &smtp.SMTPError{Code: 504, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "Unrecognized authentication type"}
	errNullSender    = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Submissions need a sender address"}
	errBadAddress    = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad address syntax"}
	errNeedRecipient = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "No valid recipients"}
)

// Server runs the configured listeners.
type Server struct {
	cfg Config
	bus *bus.Bus
	dir *tenant.Directory
	log *slog.Logger
	now func() time.Time
	// limits are the per-tenant rates (limit.go).
	limits *limiter

	servers   []*smtp.Server
	listeners []net.Listener
	mx        *mxServer // the MX listener for reports (mx.go), nil when off
}

// New returns a server; Run starts it.
func New(cfg Config, b *bus.Bus, dir *tenant.Directory, log *slog.Logger) *Server {
	return &Server{cfg: cfg, bus: b, dir: dir, log: log, now: time.Now, limits: newLimiter(cfg.Limits)}
}

// Run serves every listener until ctx ends, then stops accepting, lets open
// sessions finish for the configured grace period and returns.
func Run(ctx context.Context, cfg Config, b *bus.Bus, dir *tenant.Directory, log *slog.Logger) error {
	return New(cfg, b, dir, log).Run(ctx)
}

// Listen binds every configured listener; Serve then serves them. Split so
// that tests (and "outflow all") can learn the bound addresses first.
func (s *Server) Listen() error {
	for _, lc := range s.cfg.Listeners {
		srv, l, err := s.listen(lc)
		if err != nil {
			for _, l := range s.listeners {
				l.Close()
			}
			s.listeners, s.servers = nil, nil
			return err
		}
		s.servers = append(s.servers, srv)
		s.listeners = append(s.listeners, l)
	}
	if err := s.listenMX(); err != nil {
		for _, l := range s.listeners {
			l.Close()
		}
		return err
	}
	return nil
}

// Addr returns the bound address of the named listener, after Listen.
func (s *Server) Addr(name string) string {
	for i, lc := range s.cfg.Listeners {
		if lc.Name == name && i < len(s.listeners) {
			return s.listeners[i].Addr().String()
		}
	}
	return ""
}

// Run listens and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Serve serves the bound listeners until ctx ends, then stops accepting,
// gives open sessions the grace period to finish, and closes the rest.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, len(s.servers)+1)
	var wg sync.WaitGroup
	for i, srv := range s.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.log.Info("ingest listening", "listener", s.cfg.Listeners[i].Name, "addr", s.listeners[i].Addr().String())
			if err := srv.Serve(s.listeners[i]); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
				errc <- fmt.Errorf("serve %s: %w", s.cfg.Listeners[i].Name, err)
			}
		}()
	}
	s.serveMX(&wg, errc)
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownGrace)
	defer cancel()
	for _, srv := range s.servers {
		if err := srv.Shutdown(sctx); err != nil {
			// Sessions still open after the grace period: close them. Their
			// messages were either acknowledged (250 sent) or not (the
			// client retries).
			srv.Close()
		}
	}
	s.shutdownMX(sctx)
	// go-smtp's Shutdown closes only the listeners its Serve has already
	// registered: one whose goroutine had not started yet (a stop right
	// after the start) would accept forever. Closing ours again is
	// harmless.
	for _, l := range s.listeners {
		_ = l.Close()
	}
	if s.mx != nil {
		_ = s.mx.l.Close()
	}
	wg.Wait()
	return runErr
}

func (s *Server) listen(lc Listener) (*smtp.Server, net.Listener, error) {
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return s.newSession(lc, c), nil
	}))
	srv.Domain = s.cfg.Hostname
	srv.MaxMessageBytes = s.cfg.MaxMessageSize
	srv.MaxRecipients = s.cfg.MaxRecipients
	srv.ReadTimeout = s.cfg.ReadTimeout
	srv.WriteTimeout = s.cfg.WriteTimeout
	srv.AllowInsecureAuth = lc.AllowInsecureAuth
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = smtpLogger{s.log.With("listener", lc.Name)}
	var tlsConf *tls.Config
	if lc.TLS != TLSNone {
		cert, err := tls.LoadX509KeyPair(lc.CertFile, lc.KeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("listener %s: load certificate: %w", lc.Name, err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	var l net.Listener
	var err error
	if lc.TLS == TLSImplicit {
		l, err = tls.Listen("tcp", lc.Addr, tlsConf)
	} else {
		srv.TLSConfig = tlsConf
		l, err = net.Listen("tcp", lc.Addr)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("listener %s: %w", lc.Name, err)
	}
	return srv, l, nil
}

type smtpLogger struct{ log *slog.Logger }

func (l smtpLogger) Printf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l smtpLogger) Println(v ...any)               { l.log.Debug(fmt.Sprint(v...)) }

// session is one SMTP connection. go-smtp has no per-session context, so one
// is derived here and cancelled in Logout (CONVENTIONS 4).
type session struct {
	s        *Server
	lc       Listener
	conn     *smtp.Conn
	clientIP netip.Addr
	ctx      context.Context
	cancel   context.CancelFunc

	tenant *tenant.Tenant
	authID string
	from   string
	rcpts  []string
}

var _ smtp.AuthSession = (*session)(nil)

func (s *Server) newSession(lc Listener, c *smtp.Conn) *session {
	ctx, cancel := context.WithCancel(context.Background())
	ss := &session{s: s, lc: lc, conn: c, ctx: ctx, cancel: cancel}
	if ap, err := netip.ParseAddrPort(c.Conn().RemoteAddr().String()); err == nil {
		ss.clientIP = ap.Addr().Unmap()
	}
	if lc.ClientIPTenants && ss.clientIP.IsValid() {
		if t := s.dir.ByClientIP(ss.clientIP); t != nil {
			ss.tenant = t
			ss.authID = "ip:" + ss.clientIP.String()
		}
	}
	return ss
}

func (ss *session) AuthMechanisms() []string { return []string{sasl.Plain, sasl.Login} }

func (ss *session) Auth(mech string) (sasl.Server, error) {
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return errAuthInvalid
			}
			return ss.authenticate(username, password)
		}), nil
	case sasl.Login:
		return &loginServer{authenticate: ss.authenticate}, nil
	}
	return nil, errBadMechanism
}

func (ss *session) authenticate(username, password string) error {
	t := ss.s.dir.Tenant(username)
	if t == nil {
		ss.s.log.Info("auth failed", "listener", ss.lc.Name, "client_ip", ss.clientIP, "reason", "unknown tenant")
		return errAuthInvalid
	}
	if err := t.CheckPassword(password); err != nil {
		ss.s.log.Info("auth failed", "listener", ss.lc.Name, "client_ip", ss.clientIP, "tenant", t.ID)
		return errAuthInvalid
	}
	ss.tenant, ss.authID = t, username
	return nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.tenant == nil {
		return errAuthRequired
	}
	// Read the tenant again: it may have changed since the connection began.
	t := ss.s.dir.Tenant(ss.tenant.ID)
	if t == nil {
		return errAuthInvalid
	}
	ss.tenant = t
	p := ss.s.dir.Policy(t.ID)
	if p.State == tenant.StateSuspended {
		reason := p.Reason
		if reason == "" {
			reason = "account suspended"
		}
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Tenant suspended: " + reason}
	}
	if !ss.s.limits.underCap(t, p, ss.s.now()) {
		ss.s.log.Info("daily cap reached", "tenant", t.ID)
		return errDailyCap
	}
	if !ss.s.limits.allow(t, p, ss.s.now()) {
		ss.s.log.Info("rate limited", "tenant", t.ID, "state", p.State)
		return errThrottled
	}
	if from == "" {
		return errNullSender
	}
	if !validAddress(from) {
		return errBadAddress
	}
	if d := envelope.Domain(from); !t.HasDomain(d) {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: fmt.Sprintf("Sender domain %s is not verified for this account", d)}
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if !validAddress(to) {
		return errBadAddress
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	if len(ss.rcpts) == 0 {
		return errNeedRecipient
	}
	var raw bytes.Buffer
	if _, err := raw.ReadFrom(r); err != nil {
		return err // go-smtp maps ErrDataTooLarge to 552 5.3.4
	}
	now := ss.s.now()
	env := &envelope.Envelope{
		ID:       envelope.NewID(),
		Tenant:   ss.tenant.ID,
		From:     ss.from,
		Rcpts:    append([]string(nil), ss.rcpts...),
		Received: now,
		ClientIP: ss.clientIP.String(),
		AuthID:   ss.authID,
	}
	body := ss.trace(env, raw.Bytes())
	env.Size = int64(len(body))
	// The publish must not be cut short by a shutdown: the client is waiting
	// for our answer, and a half-done publish would leave it guessing.
	ctx := context.WithoutCancel(ss.ctx)
	if err := ss.s.bus.PublishMessage(ctx, bus.SubjectSubmitted, env.ID, env, body); err != nil {
		ss.s.log.Error("spool submission", "tenant", env.Tenant, "msg_id", env.ID, "err", err)
		return errSpoolDown
	}
	ss.s.limits.count(env.Tenant, now)
	ss.s.log.Debug("accepted", "tenant", env.Tenant, "msg_id", env.ID, "rcpts", len(env.Rcpts), "size", env.Size)
	return nil
}

func (ss *session) Reset() {
	ss.from = ""
	ss.rcpts = ss.rcpts[:0]
}

func (ss *session) Logout() error {
	ss.cancel()
	return nil
}

// validAddress is a light RFC 5321 4.1.2 check: a local part and a domain,
// no spaces or controls. go-smtp has already parsed the path.
func validAddress(a string) bool {
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 || len(a) > 254 {
		return false
	}
	for _, c := range a {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}
