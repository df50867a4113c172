package arf

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseBytes(t *testing.T) {
	raw := "From: fbl@isp.example\r\nSubject: FW: spam\r\n" +
		"Content-Type: multipart/report; report-type=feedback-report; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n" +
		"--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: ISP-FBL/1.0\r\n" +
		"Version: 1\r\nSource-IP: 192.0.2.1\r\nOriginal-Mail-From: <b-tok@bounces.example.com>\r\n" +
		"Original-Rcpt-To: <user@isp.example>\r\nArrival-Date: Thu, 8 Mar 2005 14:00:00 EDT\r\nReported-Domain: example.com\r\n\r\n" +
		"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <m1@example.com>\r\nFeedback-ID: c1:acme:pool:outflow\r\n\r\n--b--\r\n"
	rep, err := ParseBytes([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	want := Report{FeedbackType: Abuse, UserAgent: "ISP-FBL/1.0", Version: "1", SourceIP: "192.0.2.1",
		OriginalMailFrom: "b-tok@bounces.example.com", ArrivalDate: "Thu, 8 Mar 2005 14:00:00 EDT", ReportedDomain: "example.com"}
	if rep.FeedbackType != want.FeedbackType || rep.UserAgent != want.UserAgent || rep.Version != want.Version ||
		rep.SourceIP != want.SourceIP || rep.OriginalMailFrom != want.OriginalMailFrom || rep.ArrivalDate != want.ArrivalDate ||
		rep.ReportedDomain != want.ReportedDomain || len(rep.OriginalRcptTo) != 1 || rep.OriginalRcptTo[0] != "user@isp.example" {
		t.Errorf("ParseBytes = %+v, want %+v", rep, want)
	}
	if rep.Original.MessageID != "<m1@example.com>" || rep.Original.FeedbackID != "c1:acme:pool:outflow" {
		t.Errorf("original = %+v", rep.Original)
	}
}

func TestParseBytes_Corpus(t *testing.T) {
	tests := []struct{ give, want string }{
		{"sisimai__arf-02.eml", Abuse},
		{"sisimai__arf-26.eml", OptOut},
		{"mailauth__arf-003.eml", AuthFailure},
	}
	for _, tt := range tests {
		raw, err := os.ReadFile(filepath.Join("testdata", tt.give))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := ParseBytes(raw)
		if err != nil || rep.FeedbackType != tt.want {
			t.Errorf("ParseBytes(%s) = %v, %v, want %s", tt.give, rep, err, tt.want)
		}
	}
	if _, err := ParseBytes(nil); err == nil {
		t.Errorf("ParseBytes(nil) = nil error, want ErrEmpty")
	}
}

func FuzzARF(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.eml"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		rep, err := ParseBytes(raw)
		if err == nil && rep == nil {
			t.Fatal("nil report without error")
		}
	})
}
