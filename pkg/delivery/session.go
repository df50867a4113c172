package delivery

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"
	"unicode/utf8"
)

// quitTimeout bounds the wait for QUIT's reply.
const quitTimeout = 10 * time.Second

// session is an open SMTP connection from one source address to one MX
// address, greeted (and upgraded to TLS when possible), between or during
// transactions.
type session struct {
	c       *client
	key     connKey
	mx      string
	site    string
	src     source
	lim     Limits
	release func()
	// sent counts transactions started on the session; after the first,
	// each starts with RSET.
	sent             int
	connectMs, tlsMs int64
	timer            *time.Timer // idle timeout, while idle
	endOnce          sync.Once
}

// end closes the session, with QUIT when polite (the server is still
// talking to us), and frees its connection slot.
func (s *session) end(p *connPool, polite bool) {
	s.endOnce.Do(func() {
		if polite {
			s.c.quit()
		} else {
			_ = s.c.conn.Close()
		}
		if s.release != nil {
			s.release()
		}
		p.mu.Lock()
		p.signal()
		p.mu.Unlock()
	})
}

// batch is one transaction's worth of a job: recipients (by index in the
// job) sharing an envelope sender.
type batch struct {
	from string
	idx  []int
}

// batches splits a job into transactions: one per return path, each of at
// most max recipients (RFC 5321 4.5.3.1.8 lets a server take as few as 100;
// sites set their own limit).
func batches(job Job, max int) []batch {
	var out []batch
	open := map[string]int{} // return path → index in out of its open batch
	for i, r := range job.Rcpts {
		from := job.From
		if job.ReturnPath != nil {
			from = job.ReturnPath(r)
		}
		j, ok := open[from]
		if !ok || len(out[j].idx) >= max {
			out = append(out, batch{from: from})
			j = len(out) - 1
			open[from] = j
		}
		out[j].idx = append(out[j].idx, i)
	}
	return out
}

// attempt is one Deliver call's progress: the transactions not yet run.
type attempt struct {
	d    *Deliverer
	job  Job
	res  *Result
	site string
	lim  Limits
	todo []batch
	// shaped is set when shaping stopped the attempt.
	shaped *Error
}

// run sends the remaining transactions to one MX address, on idle sessions
// or new connections. A non-nil *Error means this address failed before a
// transaction began (the caller tries the next one), or shaping stopped
// the attempt (Stage StageShaping).
func (a *attempt) run(ctx context.Context, mx string, addr netip.AddrPort, srcs []source) *Error {
	fresh := false
	for len(a.todo) > 0 {
		s, e := a.d.take(ctx, a, mx, addr, srcs, fresh)
		if e != nil {
			if e.Stage == StageShaping {
				a.shaped = e
			}
			return e
		}
		a.res.Source, a.res.TLS, a.res.Reused = s.src.ip, s.c.tls, s.sent > 0
		if s.sent == 0 {
			a.res.ConnectMs, a.res.TLSMs = s.connectMs, s.tlsMs
		}
		for s != nil && len(a.todo) > 0 {
			if e := a.d.allow(ctx, s); e != nil {
				a.shaped = e
				a.res.RetryAt = time.Now().Add(a.d.opts.RateWait)
				a.d.conns.put(s)
				return e
			}
			t0 := time.Now()
			dead, early := a.d.transaction(ctx, s, a.job, a.todo[0], a.res)
			a.res.TxnMs += time.Since(t0).Milliseconds()
			reused := s.sent > 0
			s.sent++
			if early != nil {
				s.end(&a.d.conns, false)
				if reused && !fresh {
					// The server closed the connection while it was idle
					// (its timeout may be shorter than ours): nothing was
					// accepted, so try once on a new connection.
					a.d.opts.Log.Debug("reused connection was dead; reconnecting", "mx", mx, "err", early)
					fresh = true
					s = nil
					break
				}
				return early
			}
			a.todo = a.todo[1:]
			if dead {
				s.end(&a.d.conns, false)
				s = nil
			}
		}
		if s != nil {
			a.d.conns.put(s)
		}
	}
	return nil
}

// take returns a session to addr from one of srcs: an idle one when there
// is (unless fresh), else a new connection within the connection limit of
// (source, site). When every source is at its limit it waits for a slot up
// to SlotWait, then gives up with a shaping error.
func (d *Deliverer) take(ctx context.Context, a *attempt, mx string, addr netip.AddrPort, srcs []source, fresh bool) (*session, *Error) {
	tk := d.tlsKey(a.job.Domain, mx)
	deadline := time.Now().Add(d.opts.SlotWait)
	for {
		// Taken before looking, so that a session freed meanwhile wakes us.
		wake := d.conns.waitCh()
		if !fresh {
			if s := d.conns.get(addr, tk, srcs); s != nil {
				return s, nil
			}
		}
		for _, src := range srcs {
			release, err := d.acquire(ctx, src, a.site, a.lim)
			if errors.Is(err, ErrBusy) && d.conns.closeIdleOf(src.addr, a.site, addr) {
				release, err = d.acquire(ctx, src, a.site, a.lim)
			}
			if errors.Is(err, ErrBusy) {
				continue
			}
			if err != nil {
				a.res.RetryAt = time.Now().Add(d.opts.SlotWait)
				return nil, shapingError(fmt.Errorf("connection slot toward %s: %w", a.site, err))
			}
			s, e := d.open(ctx, a.job.Domain, mx, addr, src, a.site)
			if e != nil {
				release()
				return nil, e
			}
			s.key, s.lim, s.release = connKey{src: src.addr, addr: addr, tls: tk}, a.lim, release
			return s, nil
		}
		if time.Now().After(deadline) {
			a.res.RetryAt = time.Now().Add(d.opts.SlotWait)
			return nil, shapingError(fmt.Errorf("%w: every source is at its connection limit toward %s", ErrBusy, a.site))
		}
		select {
		case <-wake:
		case <-time.After(100 * time.Millisecond): // slots also free in other processes
		case <-ctx.Done():
			return nil, shapingError(fmt.Errorf("wait for a connection slot: %w", ctx.Err()))
		}
	}
}

// acquire reserves a connection slot for (src, site).
func (d *Deliverer) acquire(ctx context.Context, src source, site string, lim Limits) (func(), error) {
	if d.opts.Shaper != nil {
		return d.opts.Shaper.AcquireConn(ctx, src.ip.Address, site)
	}
	release, ok := d.conns.acquireLocal(src.addr, site, lim.MaxConnections)
	if !ok {
		return nil, ErrBusy
	}
	return release, nil
}

// allow waits for the message rate of (source, site).
func (d *Deliverer) allow(ctx context.Context, s *session) *Error {
	if d.opts.Shaper == nil {
		return nil
	}
	err := d.opts.Shaper.AllowMessage(ctx, s.src.ip.Address, s.site, d.opts.RateWait)
	if err == nil {
		return nil
	}
	return shapingError(fmt.Errorf("message rate toward %s: %w", s.site, err))
}

// observe feeds a reply to the Shaper's backoff rules and keeps the action.
func (d *Deliverer) observe(res *Result, src source, site string, r Reply) {
	if d.opts.Shaper == nil {
		return
	}
	act := d.opts.Shaper.Observe(src.ip.Address, site, r.Code, r.Enhanced, r.Text)
	if act.Kind != "" {
		d.opts.Log.Info("backoff rule applied", "rule", act.Rule, "action", act.Kind, "duration", act.Duration,
			"source_ip", src.ip.Address, "site", site, "code", r.Code, "enhanced", r.Enhanced)
		if res != nil {
			res.Actions = append(res.Actions, act)
		}
	}
}

// open connects to addr from src, reads the greeting, says EHLO and runs
// the TLS step. When a STARTTLS handshake fails it tries once more in
// plaintext if the TLS step allows it (opportunistic TLS, RFC 7435 3: a
// failed upgrade must not make delivery worse than no TLS).
func (d *Deliverer) open(ctx context.Context, domain, mx string, addr netip.AddrPort, src source, site string) (*session, *Error) {
	s, err := d.openTLS(ctx, domain, mx, addr, src, site, true)
	if err != nil && errors.Is(err.Err, errHandshake) {
		d.opts.Log.Info("STARTTLS handshake failed; retrying in plaintext", "mx", mx, "err", err)
		s, err = d.openTLS(ctx, domain, mx, addr, src, site, false)
	}
	return s, err
}

func (d *Deliverer) openTLS(ctx context.Context, domain, mx string, addr netip.AddrPort, src source, site string, tryTLS bool) (*session, *Error) {
	t0 := time.Now()
	conn, err := d.dial(ctx, src.addr, addr.String())
	if err != nil {
		e := classify(StageConnect, mx, fmt.Errorf("connect to %s from %s: %w", addr, src.addr, err))
		d.observe(nil, src, site, e.Reply)
		return nil, e
	}
	// The client takes no context: closing the connection is what
	// interrupts it when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	c := newClient(conn, d.opts.CommandTimeout, d.opts.DataTimeout)
	fail := func(stage Stage, err error) (*session, *Error) {
		_ = conn.Close()
		e := classify(stage, mx, err)
		d.observe(nil, src, site, e.Reply)
		return nil, e
	}
	if _, err := c.greeting(); err != nil {
		return fail(StageGreeting, err)
	}
	if err := c.hello(src.ip.EHLO); err != nil {
		return fail(StageGreeting, err)
	}
	s := &session{c: c, mx: mx, site: site, src: src, connectMs: time.Since(t0).Milliseconds()}
	t1 := time.Now()
	if err := d.startTLS(ctx, c, domain, mx, src.ip.EHLO, tryTLS); err != nil {
		return fail(StageTLS, err)
	}
	if c.tls {
		s.tlsMs = time.Since(t1).Milliseconds()
	}
	return s, nil
}

// transaction runs one transaction (RFC 5321 3.3) on s for the recipients
// of b, pipelined when the server offers PIPELINING (RFC 2920): RSET (on a
// used session), MAIL, every RCPT and DATA go in one write, then the
// replies are read in order. A reply to MAIL is final for every recipient;
// RCPT replies are per recipient; the DATA reply is final for every
// accepted recipient. early is set when the session failed before MAIL was
// accepted (nothing recorded; the caller may try again elsewhere); dead
// when the session cannot carry another transaction.
func (d *Deliverer) transaction(ctx context.Context, s *session, job Job, b batch, res *Result) (dead bool, early *Error) {
	c, host := s.c, s.mx
	stop := context.AfterFunc(ctx, func() { _ = c.conn.Close() })
	defer stop()
	set := func(i int, r Reply, e *Error) { res.Rcpts[i] = RcptResult{Rcpt: job.Rcpts[i], Reply: r, Err: e} }
	failAll := func(idx []int, e *Error) {
		for _, i := range idx {
			set(i, e.Reply, e)
		}
	}
	// RFC 6531 3.4: non-ASCII addresses need SMTPUTF8.
	needUTF8 := !isASCII(b.from)
	for _, i := range b.idx {
		needUTF8 = needUTF8 || !isASCII(job.Rcpts[i])
	}
	if needUTF8 && !c.has("SMTPUTF8") {
		failAll(b.idx, classify(StageMail, host, ErrSMTPUTF8))
		return false, nil
	}
	mail := "MAIL FROM:<" + b.from + ">"
	if c.has("SIZE") {
		// RFC 1870 6: declare the size so an MX that cannot take it says
		// so before the body is sent.
		mail += fmt.Sprintf(" SIZE=%d", len(job.Body))
	}
	if c.has("8BITMIME") && !isASCII(job.Body) {
		// RFC 6152 3: declare an 8-bit body where the server can take it.
		mail += " BODY=8BITMIME"
	}
	if needUTF8 {
		mail += " SMTPUTF8"
	}
	pipe := c.has("PIPELINING")
	rset := s.sent > 0
	// reply reads the next reply; with pipelining the commands were all
	// sent already, else each is sent right before.
	reply := func(line string) (Reply, error) {
		if !pipe {
			return c.cmd("%s", line)
		}
		return c.reply(d.opts.CommandTimeout)
	}
	if pipe {
		if rset {
			c.send("RSET")
		}
		c.send("%s", mail)
		for _, i := range b.idx {
			c.send("RCPT TO:<%s>", job.Rcpts[i])
		}
		c.send("DATA")
		if err := c.flush(); err != nil {
			return true, classify(StageMail, host, err)
		}
	}
	if rset {
		r, err := reply("RSET")
		if err != nil || r.Code != 250 {
			// A reused session that cannot reset is dead (often 421 after
			// the server's own idle timeout).
			if err == nil {
				err = &ReplyError{Reply: r}
			}
			return true, classify(StageMail, host, err)
		}
	}
	r, err := reply(mail)
	if err != nil {
		return true, classify(StageMail, host, err)
	}
	d.observe(res, s.src, s.site, r)
	if r.Code != 250 {
		e := classify(StageMail, host, &ReplyError{Reply: r})
		if rset && r.Code == 421 {
			return true, e // closing: like a dead session, nothing accepted
		}
		failAll(b.idx, e)
		if pipe {
			// RFC 2920 3.1: the RCPTs and DATA still get replies; read
			// them so the session stays in step.
			dead = drain(c, len(b.idx), d.opts.CommandTimeout)
			if !dead {
				dead = d.endData(c, false)
			}
		}
		return dead || r.Code == 421, nil
	}
	var accepted []int
	for n, i := range b.idx {
		r, err := reply(fmt.Sprintf("RCPT TO:<%s>", job.Rcpts[i]))
		if err != nil {
			// No reply: the rest of the recipients share the failure.
			e := classify(StageRcpt, host, err)
			failAll(b.idx[n:], e)
			failAll(accepted, e)
			return true, nil
		}
		d.observe(res, s.src, s.site, r)
		if r.Code == 250 || r.Code == 251 {
			accepted = append(accepted, i)
			continue
		}
		e := classify(StageRcpt, host, &ReplyError{Reply: r})
		set(i, e.Reply, e)
		if r.Code == 421 {
			// RFC 5321 3.8: the server is closing the channel.
			failAll(b.idx[n+1:], e)
			failAll(accepted, e)
			return true, nil
		}
	}
	if len(accepted) == 0 && !pipe {
		return false, nil // RFC 5321 3.3: no DATA without a recipient
	}
	r, err = reply("DATA")
	if err != nil {
		failAll(accepted, classify(StageData, host, err))
		return true, nil
	}
	if r.Code != 354 {
		if len(accepted) > 0 {
			d.observe(res, s.src, s.site, r)
			failAll(accepted, classify(StageData, host, &ReplyError{Reply: r}))
		}
		return r.Code == 421, nil
	}
	if len(accepted) == 0 {
		// RFC 2920 3.1: DATA was accepted though no recipient was; end
		// it with an empty message, which the server rejects.
		return d.endData(c, true), nil
	}
	if err := c.writeData(job.Body); err != nil {
		failAll(accepted, classify(StageData, host, err))
		return true, nil
	}
	r, err = c.reply(d.opts.DataTimeout)
	if err != nil {
		// The server may have taken the message: another attempt may
		// deliver it twice, which is better than losing it.
		failAll(accepted, classify(StageData, host, err))
		return true, nil
	}
	d.observe(res, s.src, s.site, r)
	if r.Code/100 != 2 {
		failAll(accepted, classify(StageData, host, &ReplyError{Reply: r}))
		return r.Code == 421, nil
	}
	if r.Enhanced == "" {
		r.Enhanced = "2.0.0"
	}
	for _, i := range accepted {
		set(i, r, nil)
	}
	return false, nil
}

// drain reads n pipelined replies that no longer matter; it reports
// whether the session broke meanwhile.
func drain(c *client, n int, timeout time.Duration) bool {
	for range n {
		if _, err := c.reply(timeout); err != nil {
			return true
		}
	}
	return false
}

// endData reads the reply to a pipelined DATA sent for a transaction that
// cannot go on; a 354 is answered with an empty message ("."), whose
// reply is read and ignored. It reports whether the session broke. When
// readDone is set the 354 was read already.
func (d *Deliverer) endData(c *client, readDone bool) bool {
	if !readDone {
		r, err := c.reply(d.opts.CommandTimeout)
		if err != nil {
			return true
		}
		if r.Code != 354 {
			return r.Code == 421
		}
	}
	c.send(".")
	if err := c.flush(); err != nil {
		return true
	}
	r, err := c.reply(d.opts.DataTimeout)
	return err != nil || r.Code == 421
}

func isASCII[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// shapingError is the error of recipients that shaping kept from being
// tried: temporary, with no server reply.
func shapingError(err error) *Error {
	return &Error{Reply: Reply{Enhanced: "4.7.0", Text: err.Error()}, Stage: StageShaping, Err: err}
}
