package delivery

import (
	"net/textproto"
	"strings"
	"testing"
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
