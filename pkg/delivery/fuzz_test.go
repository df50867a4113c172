package delivery

import (
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// FuzzClassifyReply feeds remote reply lines, as our STARTTLS exchange
// reads them, through classify: it must never panic, and permanence must
// follow the basic code.
func FuzzClassifyReply(f *testing.F) {
	for _, s := range []string{"2.0.0 OK", "5.1.10 null MX", "4.7.x", "", "5.. x", "9.9.9 odd", "4.4.4444 long"} {
		f.Add(550, s)
		f.Add(421, s)
	}
	f.Fuzz(func(t *testing.T, code int, msg string) {
		e := classify(StageTLS, "mx", &textproto.Error{Code: code, Msg: msg})
		if e.Permanent != (code/100 == 5) {
			t.Errorf("classify(%d %q): permanent %v", code, msg, e.Permanent)
		}
		if e.Enhanced == "" || strings.Count(e.Enhanced, ".") != 2 {
			t.Errorf("classify(%d %q): enhanced %q", code, msg, e.Enhanced)
		}
	})
}

// FuzzClientReply feeds arbitrary server output to the SMTP client's reply
// reader: it must never panic, and a reply it accepts has a code in
// 200-599 and one enhanced status at most.
func FuzzClientReply(f *testing.F) {
	for _, s := range []string{
		"250 2.0.0 ok\r\n", "250-mx greets\r\n250-PIPELINING\r\n250 SIZE 100\r\n", "421 4.4.2 bye\r\n",
		"550-5.1.1 no\r\n550 5.1.1 such user\r\n", "2\r\n", "999 x\r\n", "250-a\r\n251 b\r\n", "250", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		server, conn := net.Pipe()
		go func() {
			_, _ = server.Write(data)
			server.Close()
		}()
		c := newClient(conn, time.Second, time.Second)
		defer conn.Close()
		r, err := c.reply(time.Second)
		if err != nil {
			return
		}
		if r.Code < 200 || r.Code > 599 {
			t.Errorf("accepted code %d from %q", r.Code, data)
		}
		if r.Enhanced != "" && strings.Count(r.Enhanced, ".") != 2 {
			t.Errorf("enhanced %q from %q", r.Enhanced, data)
		}
	})
}
