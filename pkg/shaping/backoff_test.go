package shaping

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outflowmail/outflow/pkg/delivery"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/pool"
	"github.com/outflowmail/outflow/pkg/smtptest"
)

// sendOnce opens a connection from src to addr and tries one transaction;
// it returns the receiver's refusal, or a 250 reply.
func sendOnce(t *testing.T, src, addr string) (int, string, string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	err = c.Hello("sender.test")
	if err == nil {
		err = c.Mail("a@sender.test", nil)
	}
	if err == nil {
		err = c.Rcpt("b@rcpt.test", nil)
	}
	if err == nil {
		var w interface {
			Write([]byte) (int, error)
			Close() error
		}
		if w, err = c.Data(); err == nil {
			_, _ = w.Write([]byte("Subject: t\r\n\r\nbody\r\n"))
			err = w.Close()
		}
	}
	if err == nil {
		return 250, "2.0.0", "OK"
	}
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("send: %v", err)
	}
	enh := ""
	if se.EnhancedCode != smtp.NoEnhancedCode && se.EnhancedCode != (smtp.EnhancedCode{}) {
		enh = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	return se.Code, enh, se.Message
}

// TestObserve_Actions: a receiver answers a documented throttling or
// blocking reply; the reply fed to Observe takes the action the shipped
// rules name, which the other process obeys too (through the bucket), and
// a shaping event says so.
func TestObserve_Actions(t *testing.T) {
	srv := startNATS(t)
	cfg := DefaultConfig()
	cfg.Defaults.MaxConnections = intp(4)
	a := startProc(t, srv, Options{Config: cfg, Sender: "a"})
	b := startProc(t, srv, Options{Config: cfg, Sender: "b"})
	ips := []pool.IP{{Address: "127.0.0.2"}, {Address: "127.0.0.3"}}
	ctx := context.Background()

	tests := []struct {
		name                  string
		site                  string
		giveCode              int
		giveEnhanced, giveTxt string
		wantRule, wantKind    string
		// check verifies the effect in process b.
		check func(t *testing.T, site string) bool
	}{
		{
			name: "suspend", site: "google-1", giveCode: 421, giveEnhanced: "4.7.0",
			giveTxt:  "[127.0.0.2] Our system has detected an unusual rate of unsolicited mail originating from your IP address. - gsmtp",
			wantRule: "gmail-unusual-rate", wantKind: KindSuspend,
			check: func(t *testing.T, site string) bool {
				usable, _ := b.shaper.Sources(site, ips)
				err := b.shaper.AllowMessage(ctx, "127.0.0.2", site, time.Second)
				_, cerr := b.shaper.AcquireConn(ctx, "127.0.0.2", site)
				return len(usable) == 1 && usable[0].Address == "127.0.0.3" &&
					errors.Is(err, delivery.ErrRateLimited) && errors.Is(cerr, delivery.ErrBusy)
			},
		},
		{
			name: "remove", site: "spamhaus-user", giveCode: 554, giveEnhanced: "5.7.1",
			giveTxt:  "Service unavailable; Client host [127.0.0.2] blocked using zen.spamhaus.org",
			wantRule: "dnsbl-blocked-using", wantKind: KindRemove,
			check: func(t *testing.T, site string) bool {
				usable, _ := b.shaper.Sources(site, ips)
				other, _ := b.shaper.Sources("elsewhere", ips)
				return len(usable) == 1 && usable[0].Address == "127.0.0.3" && len(other) == 2
			},
		},
		{
			name: "throttle", site: "busy-host", giveCode: 421, giveEnhanced: "4.7.0",
			giveTxt:  "Error: too many connections from 127.0.0.2",
			wantRule: "too-many-connections", wantKind: KindThrottle,
			check: func(t *testing.T, site string) bool {
				// Half of 4 connections.
				var releases []func()
				defer func() {
					for _, r := range releases {
						r()
					}
				}()
				for range 4 {
					r, err := b.shaper.AcquireConn(ctx, "127.0.0.2", site)
					if err != nil {
						break
					}
					releases = append(releases, r)
				}
				usable, _ := b.shaper.Sources(site, ips)
				return len(releases) == 2 && len(usable) == 2
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := smtptest.Start(t, smtptest.Options{Hooks: smtptest.Hooks{
				Mail: func(string) error { return smtptest.Reply(tt.giveCode, tt.giveEnhanced, tt.giveTxt) },
			}})
			code, enh, text := sendOnce(t, "127.0.0.2", rcv.Addr())
			if code != tt.giveCode {
				t.Fatalf("receiver answered %d %s %s", code, enh, text)
			}
			act := a.shaper.Observe("127.0.0.2", tt.site, code, enh, text)
			if act.Rule != tt.wantRule || act.Kind != tt.wantKind {
				t.Fatalf("Observe(%d %s %q) = %+v, want rule %s kind %s", code, enh, text, act, tt.wantRule, tt.wantKind)
			}
			if again := a.shaper.Observe("127.0.0.2", tt.site, code, enh, text); again.Kind != "" {
				t.Errorf("the same reply again: %+v, want no new action", again)
			}
			eventually(t, 5*time.Second, "process b does not obey "+tt.wantKind, func() bool { return tt.check(t, tt.site) })
			evs := a.published()
			if !slices.ContainsFunc(evs, func(e *events.Event) bool {
				return e.Type == events.TypeShaping && e.Shaping.Rule == tt.wantRule && e.Shaping.Site == tt.site &&
					e.Shaping.Action == tt.wantKind && strings.Contains(e.Shaping.Reply, tt.giveEnhanced)
			}) {
				t.Errorf("no shaping event for %s in %d events", tt.wantRule, len(evs))
			}
		})
	}
}

// TestObserve_ScopeSiteAndExpiry: a site-wide suspension leaves no source
// for the site until it ends, and Sources says when that is; afterwards
// the site is usable again.
func TestObserve_ScopeSiteAndExpiry(t *testing.T) {
	srv := startNATS(t)
	cfg := DefaultConfig()
	cfg.Backoff = []Rule{{Name: "site-down", Code: "421", Text: "(?i)maintenance", Action: KindSuspend, Scope: ScopeSite, Duration: 2 * time.Second}}
	a := startProc(t, srv, Options{Config: cfg})
	ips := []pool.IP{{Address: "127.0.0.2"}, {Address: "127.0.0.3"}}
	act := a.shaper.Observe("127.0.0.2", "maint", 421, "", "Service in maintenance, try later")
	if act.Kind != KindSuspend {
		t.Fatalf("Observe = %+v", act)
	}
	usable, until := a.shaper.Sources("maint", ips)
	if len(usable) != 0 || until.Before(time.Now().Add(time.Second)) || until.After(time.Now().Add(3*time.Second)) {
		t.Fatalf("Sources during a site suspension = %v, until %v; want none until about 2s from now", usable, until)
	}
	eventually(t, 5*time.Second, "the suspension did not end", func() bool {
		usable, _ := a.shaper.Sources("maint", ips)
		return len(usable) == 2
	})
}
