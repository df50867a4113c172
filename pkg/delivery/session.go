package delivery

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"
)

// quitTimeout bounds the wait for QUIT's reply.
const quitTimeout = 10 * time.Second

// errHandshake marks a failed TLS handshake after STARTTLS was accepted: the
// connection is unusable, and opportunistic TLS retries in plaintext.
var errHandshake = errors.New("delivery: TLS handshake")

// session delivers job to one address. It tries STARTTLS when offered and,
// if the handshake fails, once more in plaintext (opportunistic TLS, RFC 7435
// 3: a failed upgrade must not make delivery worse than no TLS). A non-nil
// *Error means no transaction started and the next address may be tried;
// otherwise the result is final for this attempt.
func (d *Deliverer) session(ctx context.Context, job Job, src netip.Addr, hostname string, addr netip.AddrPort) (Result, *Error) {
	res, err := d.sessionTLS(ctx, job, src, hostname, addr, true)
	if err != nil && errors.Is(err.Err, errHandshake) {
		d.opts.Log.Info("STARTTLS handshake failed; retrying in plaintext", "mx", hostname, "err", err)
		res, err = d.sessionTLS(ctx, job, src, hostname, addr, false)
	}
	return res, err
}

func (d *Deliverer) sessionTLS(ctx context.Context, job Job, src netip.Addr, hostname string, addr netip.AddrPort, tryTLS bool) (Result, *Error) {
	res := Result{MX: hostname, Addr: addr.String()}
	conn, err := d.dial(ctx, src, addr.String())
	if err != nil {
		return res, classify(StageConnect, hostname, fmt.Errorf("connect to %s from %s: %w", addr, src, err))
	}
	defer conn.Close()
	// go-smtp's client takes no context: closing the connection is what
	// interrupts it when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	c := d.client(conn)
	if err := c.Hello(job.Source.EHLO); err != nil {
		return res, classify(StageGreeting, hostname, err)
	}
	// RFC 3207 4: STARTTLS when the server offers it. go-smtp's client
	// only starts TLS before our EHLO, greeting with "localhost", which a
	// shared IP must never do; so the upgrade is done here and the TLS
	// connection handed to a fresh client.
	if ok, _ := c.Extension("STARTTLS"); ok && tryTLS {
		tc, err := startTLS(ctx, conn, hostname, d.opts.CommandTimeout)
		var refused *textproto.Error
		switch {
		case errors.As(err, &refused):
			// RFC 3207 4: after a refused STARTTLS the session goes on
			// in plaintext.
			d.opts.Log.Debug("STARTTLS refused; continuing in plaintext", "mx", hostname, "err", err)
		case err != nil:
			return res, classify(StageTLS, hostname, err)
		default:
			c = d.client(greeted(tc))
			// RFC 3207 4.2: the session restarts; greet again.
			if err := c.Hello(job.Source.EHLO); err != nil {
				return res, classify(StageTLS, hostname, err)
			}
			res.TLS = true
		}
	}
	return d.transaction(c, conn, job, res)
}

func (d *Deliverer) client(conn net.Conn) *smtp.Client {
	c := smtp.NewClient(conn)
	c.CommandTimeout = d.opts.CommandTimeout
	c.SubmissionTimeout = d.opts.DataTimeout
	return c
}

// transaction runs MAIL, RCPT and DATA (RFC 5321 3.3). A reply to MAIL is
// final for every recipient; RCPT replies are per recipient; the DATA reply
// is final for every accepted recipient. A broken connection before MAIL's
// reply lets the caller try the next address.
func (d *Deliverer) transaction(c *smtp.Client, conn net.Conn, job Job, res Result) (Result, *Error) {
	host := res.MX
	res.Rcpts = make([]RcptResult, len(job.Rcpts))
	fail := func(i int, e *Error) { res.Rcpts[i] = RcptResult{Rcpt: job.Rcpts[i], Reply: e.Reply, Err: e} }
	failFrom := func(from int, e *Error) {
		for i := from; i < len(job.Rcpts); i++ {
			fail(i, e)
		}
	}
	broken := false // no reply came: QUIT would only wait
	defer func() {
		if !broken {
			// RFC 5321 4.1.1.10; the reply does not matter, so do not
			// wait for it long.
			c.CommandTimeout = quitTimeout
			_ = c.Quit()
		}
	}()

	// RFC 6531 3.4: non-ASCII addresses need SMTPUTF8.
	needUTF8 := !isASCII(job.From)
	for _, r := range job.Rcpts {
		needUTF8 = needUTF8 || !isASCII(r)
	}
	if ok, _ := c.Extension("SMTPUTF8"); needUTF8 && !ok {
		failFrom(0, classify(StageMail, host, ErrSMTPUTF8))
		return res, nil
	}
	// RFC 1870 6: declare the size so an MX that cannot take it says so
	// before the body is sent.
	if err := c.Mail(job.From, &smtp.MailOptions{Size: int64(len(job.Body)), UTF8: needUTF8}); err != nil {
		e := classify(StageMail, host, err)
		if e.Code == 0 {
			broken = true
			return res, e
		}
		failFrom(0, e)
		return res, nil
	}
	var accepted []int
	for i, r := range job.Rcpts {
		err := c.Rcpt(r, nil)
		if err == nil {
			accepted = append(accepted, i)
			continue
		}
		e := classify(StageRcpt, host, err)
		// No reply, or 421 (RFC 5321 3.8: the server is closing the
		// channel): the remaining recipients share the failure.
		if e.Code == 0 || e.Code == 421 {
			broken = true
			failFrom(i, e)
			for _, j := range accepted {
				fail(j, e)
			}
			return res, nil
		}
		fail(i, e)
	}
	if len(accepted) == 0 {
		return res, nil // RFC 5321 3.3: no DATA without a recipient
	}
	reply, err := sendData(c, conn, job.Body, d.opts.DataTimeout)
	if err != nil {
		_, _, _, isReply := replyOf(err)
		broken = !isReply
	}
	for _, i := range accepted {
		if err != nil {
			fail(i, classify(StageData, host, err))
			continue
		}
		res.Rcpts[i] = RcptResult{Rcpt: job.Rcpts[i], Reply: reply}
	}
	return res, nil
}

func sendData(c *smtp.Client, conn net.Conn, body []byte, timeout time.Duration) (Reply, error) {
	w, err := c.Data()
	if err != nil {
		return Reply{}, err
	}
	// go-smtp bounds only the replies; the body write needs its own
	// deadline (RFC 5321 4.5.3.2.5).
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := io.Copy(w, bytes.NewReader(body)); err != nil {
		return Reply{}, fmt.Errorf("send body: %w", err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return Reply{}, err
	}
	enh, text := splitEnhanced(resp.StatusText)
	if enh == "" {
		enh = "2.0.0"
	}
	return Reply{Code: 250, Enhanced: enh, Text: text}, nil
}

// startTLS sends STARTTLS on conn and runs the handshake. A refusal comes
// back as *textproto.Error; a failed handshake wraps errHandshake.
// Certificates are not verified: this is opportunistic TLS (RFC 7435), which
// protects against passive eavesdropping only; verified policies (MTA-STS,
// DANE) come later.
func startTLS(ctx context.Context, conn net.Conn, hostname string, timeout time.Duration) (net.Conn, error) {
	_ = conn.SetDeadline(time.Now().Add(timeout))
	defer func() { _ = conn.SetDeadline(time.Time{}) }()
	if _, err := io.WriteString(conn, "STARTTLS\r\n"); err != nil {
		return nil, fmt.Errorf("send STARTTLS: %w", err)
	}
	// A fresh reader, discarded afterwards: whatever the server sent after
	// its 220 came before TLS and must not be read as if protected (the
	// STARTTLS command injection of CVE-2011-0411).
	if _, _, err := textproto.NewReader(bufio.NewReader(conn)).ReadResponse(220); err != nil {
		return nil, err
	}
	cfg := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // opportunistic TLS, see above
	if _, err := netip.ParseAddr(hostname); err != nil {
		cfg.ServerName = hostname
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("%w with %s: %w", errHandshake, hostname, err)
	}
	return tc, nil
}

// greeted makes a TLS connection look like a new one to go-smtp's client,
// which expects a 220 greeting before its EHLO; after STARTTLS the server
// sends none (RFC 3207 4.2), so we supply it.
func greeted(tc net.Conn) net.Conn {
	return &greetedConn{Conn: tc, r: io.MultiReader(strings.NewReader("220 TLS established\r\n"), tc)}
}

type greetedConn struct {
	net.Conn
	r io.Reader
}

func (g *greetedConn) Read(p []byte) (int, error) { return g.r.Read(p) }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
