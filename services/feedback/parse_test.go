package feedback

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name       string
		mailbox    string
		raw        string
		wantClass  string
		wantErr    string
		wantRcpts  string // failed recipients, comma separated, with reason:hard
		wantFBType string
	}{
		{"dsn", "bounce", testDSN("r@b.test", "gone@x.example", "5.1.1", "550 5.1.1 User unknown"), ClassDSN, "", "gone@x.example userunknown:true", ""},
		{"dsn mailbox full", "bounce", testDSN("r@b.test", "full@x.example", "5.2.2", "552 5.2.2 Mailbox full"), ClassDSN, "", "full@x.example mailboxfull:false", ""},
		{"arf", "fbl", testARF("r@b.test", "angry@y.example", "abuse"), ClassARF, "", "", "abuse"},
		{"arf without feedback type", "fbl", strings.Replace(testARF("r@b.test", "a@y.example", "abuse"), "Feedback-Type: abuse\r\n", "", 1), "", "Feedback-Type", "", ""},
		{"dsn sent to the fbl address", "fbl", testDSN("r@b.test", "gone@x.example", "5.1.1", "550 5.1.1 unknown"), ClassDSN, "", "gone@x.example userunknown:true", ""},
		{"plain note to postmaster", "bounce", "From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n", "", "not a delivery status notification", "", ""},
		{"vacation", "bounce", "From: a@b.example\r\nX-Autoreply: yes\r\nSubject: away\r\n\r\naway\r\n", ClassAutoReply, "", "", ""},
		{"dmarc without report", "dmarc", "From: noreply-dmarc@google.com\r\nSubject: Report domain: x\r\n\r\n", "", "no report attached", "", ""},
	}
	p := NewParser()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := p.Parse(tt.mailbox, []byte(tt.raw))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse = %+v, %v; want error containing %q", f, err, tt.wantErr)
				}
				return
			}
			if err != nil || f.Class != tt.wantClass {
				t.Fatalf("Parse = %+v, %v; want class %s", f, err, tt.wantClass)
			}
			var rcpts []string
			for _, b := range f.Bounces {
				rcpts = append(rcpts, b.Rcpt+" "+b.Reason+":"+map[bool]string{true: "true", false: "false"}[b.Hard])
			}
			if got := strings.Join(rcpts, ","); got != tt.wantRcpts {
				t.Errorf("bounces = %q, want %q", got, tt.wantRcpts)
			}
			if tt.wantFBType != "" && (f.Complaint == nil || f.Complaint.FeedbackType != tt.wantFBType || f.Original.FeedbackID == "") {
				t.Errorf("complaint = %+v, original %+v", f.Complaint, f.Original)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("bounce", testDSN("r@b.test", "gone@x.example", "5.1.1", "550 5.1.1 User unknown"))
	f.Add("fbl", testARF("r@b.test", "angry@y.example", "abuse"))
	f.Add("bounce", "Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\n\r\n\r\nAction: failed\r\n--x--")
	f.Add("dmarc", dmarcMail("application/gzip", "r.xml.gz", gzipped(sampleAggregate)))
	f.Add("dmarc", dmarcMail("application/zip", "r.zip", zipped("r.xml", sampleAggregate)))
	p := NewParser()
	f.Fuzz(func(t *testing.T, mailbox, raw string) {
		fd, err := p.Parse(mailbox, []byte(raw))
		if err == nil && fd.Class == "" {
			t.Fatalf("Parse(%q) gave no class and no error", raw)
		}
	})
}
