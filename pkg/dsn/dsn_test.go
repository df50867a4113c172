package dsn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseBytes(t *testing.T) {
	tests := []struct {
		give       string
		wantBounce bool
		wantAuto   bool
		wantAddr   string
		wantReason string
		wantHard   bool
	}{
		{"lhost-postfix-01.eml", true, false, "r@p351355.pool.example.ne.jp", "mailererror", false},
		{"lhost-qmail-01.eml", true, false, "kijitora@example.ne.jp", "userunknown", true},
		{"lhost-exim-06.eml", true, false, "kijitora@example.com", "expired", false},
		{"rfc3834-01.eml", false, true, "", "", false},
	}
	for _, tt := range tests {
		raw, err := os.ReadFile(filepath.Join("testdata", tt.give))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := ParseBytes(raw)
		if err != nil {
			t.Fatalf("ParseBytes(%s): %v", tt.give, err)
		}
		if rep.IsBounce != tt.wantBounce || rep.AutoReply != tt.wantAuto {
			t.Errorf("ParseBytes(%s) bounce=%v auto=%v, want %v %v", tt.give, rep.IsBounce, rep.AutoReply, tt.wantBounce, tt.wantAuto)
		}
		if !tt.wantBounce {
			continue
		}
		if len(rep.Recipients) == 0 {
			t.Fatalf("ParseBytes(%s): no recipients", tt.give)
		}
		r := rep.Recipients[0]
		if r.Address != tt.wantAddr || r.Reason != tt.wantReason || r.Hard != tt.wantHard {
			t.Errorf("ParseBytes(%s) = %s %s hard=%v, want %s %s hard=%v", tt.give, r.Address, r.Reason, r.Hard, tt.wantAddr, tt.wantReason, tt.wantHard)
		}
	}
}

func TestParseBytes_Original(t *testing.T) {
	raw := "From: MAILER-DAEMON@example.org\r\nSubject: Undelivered Mail Returned to Sender\r\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nI'm sorry.\r\n" +
		"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n" +
		"Final-Recipient: rfc822; Nobody@Example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n" +
		"Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown\r\n\r\n" +
		"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nReturn-Path: <b-tok@bounces.example.com>\r\n" +
		"Message-ID: <abc@example.com>\r\nFeedback-ID: c1:acme:pool:outflow\r\nX-Outflow-Tenant: acme\r\n\r\n--b--\r\n"
	rep, err := ParseBytes([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.IsBounce || !rep.Standard || rep.ReportingMTA != "mx.example.org" {
		t.Fatalf("report = %+v", rep)
	}
	r := rep.Recipients[0]
	if r.Address != "nobody@example.net" || r.Status != "5.1.1" || r.ReplyCode != 550 || r.Reason != "userunknown" || !r.Hard {
		t.Errorf("recipient = %+v", r)
	}
	o := rep.Original
	if o.MessageID != "<abc@example.com>" || o.FeedbackID != "c1:acme:pool:outflow" || o.ReturnPath != "b-tok@bounces.example.com" || o.Outflow["X-Outflow-Tenant"] != "acme" {
		t.Errorf("original = %+v", o)
	}
}

func TestParseBytes_Broken(t *testing.T) {
	for _, give := range []string{"", "   \n", "no header at all", "Content-Type: multipart/report; boundary=x\n\n--x\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822;", strings.Repeat("a: b\n", 1000)} {
		_, _ = ParseBytes([]byte(give)) // must not panic
	}
	if _, err := ParseBytes(nil); err == nil {
		t.Errorf("ParseBytes(nil) = nil error, want ErrEmpty")
	}
}

func FuzzDSN(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.eml"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822; a@b\nStatus: 5.1.1\n\n--b--\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		rep, err := ParseBytes(raw)
		if err == nil && rep == nil {
			t.Fatal("nil report without error")
		}
	})
}
