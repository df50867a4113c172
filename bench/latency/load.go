package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// loadOptions shape the paced submission.
type loadOptions struct {
	addr     string
	sessions int
	rate     float64 // submissions per second
	from     string
	rcpt     string
	size     int
	run      string
}

// submission is one message's fate on the submitting side.
type submission struct {
	seq      int
	start    time.Time // when MAIL FROM went out: the latency's zero
	replied  time.Time // when the reply to the data came
	accepted bool      // the system answered 250 to its data
	err      error
}

// submitPaced submits n messages, one per tick of a ticker at o.rate, each
// to the first of o.sessions sessions that is free. The load is open: when
// every session is busy the tick is lost rather than caught up in a burst,
// so a system slower than the rate shows as a lower achieved rate (and as
// long latencies), not as a queue inside the tool. Messages not started
// when ctx ends keep a zero start.
func submitPaced(ctx context.Context, o loadOptions, n int) []submission {
	subs := make([]submission, n)
	for i := range subs {
		subs[i].seq = i
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range o.sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *smtp.Client
			defer func() {
				if c != nil {
					_ = c.Quit()
				}
			}()
			for i := range jobs {
				s := &subs[i]
				if c == nil {
					var err error
					if c, err = dialSMTP(ctx, o.addr); err != nil {
						s.err = err
						continue
					}
				}
				data := message(o, i, time.Now())
				s.start = time.Now()
				err := send(c, o.from, o.rcpt, data)
				s.replied = time.Now()
				if err == nil {
					s.accepted = true
					continue
				}
				s.err = err
				var se *smtp.SMTPError
				if !errors.As(err, &se) || c.Reset() != nil {
					_ = c.Close() // the connection is gone; the next message redials
					c = nil
				}
			}
		}()
	}
	interval := time.Duration(float64(time.Second) / o.rate)
	tick := time.NewTicker(max(interval, time.Microsecond))
	defer tick.Stop()
feed:
	for i := range n {
		if i > 0 {
			select {
			case <-tick.C:
			case <-ctx.Done():
				break feed
			}
		}
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	return subs
}

// dialSMTP opens a session; the connection closes when ctx ends, which ends
// any command in progress (go-smtp's client takes no context).
func dialSMTP(ctx context.Context, addr string) (*smtp.Client, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	c := smtp.NewClient(conn)
	// A system that stops answering must not hang the run for go-smtp's
	// default of minutes per command.
	c.CommandTimeout, c.SubmissionTimeout = 30*time.Second, time.Minute
	if err := c.Hello("latency.bench.localhost"); err != nil {
		stop()
		_ = c.Close()
		return nil, fmt.Errorf("ehlo %s: %w", addr, err)
	}
	return c, nil
}

func send(c *smtp.Client, from, rcpt string, data []byte) error {
	if err := c.Mail(from, nil); err != nil {
		return fmt.Errorf("mail from: %w", err)
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return fmt.Errorf("rcpt to: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		_ = w.Close()
		return fmt.Errorf("data: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of data: %w", err)
	}
	return nil
}

// filler is the body's text, repeated up to the size asked for: plain prose
// like a notification's, so that the classifier does its usual work on it.
var filler = strings.Fields(`Hello, this is a note about your order and the
delivery window we agreed on last week. The parcel left our warehouse this
morning and should reach you within two working days. If nobody is at home
the courier will leave a card with a number to call. You can change the
delivery address or pick a later date from your account page at any time.
Thank you for shopping with us, and let us know if anything is missing.`)

// message builds seq's message: headers naming it (so that no system sees
// two equal messages and the receiver can tell which one arrived), then
// filler text in lines of at most 76 characters up to about o.size bytes.
func message(o loadOptions, seq int, now time.Time) []byte {
	var b strings.Builder
	b.Grow(o.size + 512)
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\n", o.from, o.rcpt)
	fmt.Fprintf(&b, "Subject: Your order %d is on its way\r\n", seq)
	fmt.Fprintf(&b, "Date: %s\r\n", now.UTC().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s.%d@latency.bench.localhost>\r\n", o.run, seq)
	fmt.Fprintf(&b, "%s: %s.%d\r\n", seqHeader, o.run, seq)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	fmt.Fprintf(&b, "Order %d.\r\n", seq)
	line := 0
	for i := 0; b.Len() < o.size; i++ {
		w := filler[i%len(filler)]
		if line > 0 && line+1+len(w) > 76 {
			b.WriteString("\r\n")
			line = 0
		}
		if line > 0 {
			b.WriteByte(' ')
			line++
		}
		b.WriteString(w)
		line += len(w)
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}
