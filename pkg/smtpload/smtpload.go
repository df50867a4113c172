// Package smtpload submits many messages over SMTP from several concurrent
// sessions and records, per message, whether the server accepted it (a 250
// to DATA) and how long that took. End-to-end tests use it to know exactly
// which messages the platform took responsibility for; the benchmark tool
// uses it to time submissions.
package smtpload

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Message is one submission.
type Message struct {
	// Key identifies the message to the caller (e.g. its Message-ID).
	Key  string
	From string
	To   []string
	Data []byte
}

// Options of a run.
type Options struct {
	Addr        string
	Sessions    int
	Helo        string
	User, Pass  string // AUTH PLAIN when User is set
	PerSession  int    // messages per connection before reconnecting; 0 = unlimited
	DialTimeout time.Duration
}

// Result of one message.
type Result struct {
	Key      string
	Accepted bool
	Err      error
	Sent     time.Time
	Latency  time.Duration
}

// Run submits msgs and returns one result per message, in msgs order. It
// stops early when ctx ends; messages not attempted have Err set to the
// context's error.
func Run(ctx context.Context, o Options, msgs []Message) []Result {
	if o.Sessions < 1 {
		o.Sessions = 1
	}
	if o.Helo == "" {
		o.Helo = "load.test"
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 5 * time.Second
	}
	results := make([]Result, len(msgs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range o.Sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *smtp.Client
			sent := 0
			closeClient := func() {
				if c != nil {
					_ = c.Close()
					c = nil
				}
			}
			defer closeClient()
			for i := range next {
				m := msgs[i]
				r := &results[i]
				r.Key = m.Key
				if c == nil || (o.PerSession > 0 && sent >= o.PerSession) {
					closeClient()
					var err error
					c, err = dial(ctx, o)
					sent = 0
					if err != nil {
						r.Err = err
						continue
					}
				}
				r.Sent = time.Now()
				err := submit(c, m)
				r.Latency = time.Since(r.Sent)
				sent++
				if err != nil {
					r.Err = err
					var se *smtp.SMTPError
					if !errors.As(err, &se) {
						closeClient() // connection broken; next message redials
					} else if rerr := c.Reset(); rerr != nil {
						closeClient()
					}
					continue
				}
				r.Accepted = true
			}
		}()
	}
feed:
	for i := range msgs {
		select {
		case next <- i:
		case <-ctx.Done():
			for j := i; j < len(msgs); j++ {
				results[j] = Result{Key: msgs[j].Key, Err: ctx.Err()}
			}
			break feed
		}
	}
	close(next)
	wg.Wait()
	return results
}

func dial(ctx context.Context, o Options) (*smtp.Client, error) {
	d := &net.Dialer{Timeout: o.DialTimeout}
	conn, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", o.Addr, err)
	}
	c := smtp.NewClient(conn)
	if err := c.Hello(o.Helo); err != nil {
		c.Close()
		return nil, fmt.Errorf("ehlo: %w", err)
	}
	if o.User != "" {
		if err := c.Auth(sasl.NewPlainClient("", o.User, o.Pass)); err != nil {
			c.Close()
			return nil, fmt.Errorf("auth: %w", err)
		}
	}
	return c, nil
}

func submit(c *smtp.Client, m Message) error {
	if err := c.Mail(m.From, nil); err != nil {
		return err
	}
	for _, r := range m.To {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(m.Data); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// Summary counts results.
type Summary struct {
	Accepted, Rejected, Failed int
}

// Summarize counts accepted messages, SMTP rejections and other failures.
func Summarize(rs []Result) Summary {
	var s Summary
	for _, r := range rs {
		var se *smtp.SMTPError
		switch {
		case r.Accepted:
			s.Accepted++
		case errors.As(r.Err, &se):
			s.Rejected++
		default:
			s.Failed++
		}
	}
	return s
}
