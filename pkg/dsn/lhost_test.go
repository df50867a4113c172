package dsn

import (
	"testing"

	"github.com/outflowmail/outflow/pkg/bouncereason"
)

func TestReportingMTA(t *testing.T) {
	for _, tc := range []struct {
		name, msg, want string
	}{
		{"qmail null MX is notaccept", "From: MAILER-DAEMON@mx.example.net\nTo: a@example.org\nSubject: failure notice\n\n" +
			"Hi. This is the qmail-send program at mx.example.net.\nI'm afraid I wasn't able to deliver your message to the following addresses.\n" +
			"This is a permanent error; I've given up. Sorry it didn't work out.\n\n<b@nomx.example>:\nSorry, I couldn't find a mail exchanger or IP address. (#5.4.4)\n", bouncereason.NotAccept},
		{"qmail gave up with a remote refusal", "From: MAILER-DAEMON@mx.example.net\nTo: a@example.org\nSubject: failure notice\n\n" +
			"Hi. This is the qmail-send program at mx.example.net.\n\n<b@example.com>:\n192.0.2.1 does not like recipient.\nRemote host said: 550 5.1.1 <b@example.com>... User Unknown\n" +
			"I'm not going to try again; this message has been in the queue too long.\n", bouncereason.UserUnknown},
		{"domino directory", "From: Postmaster <postmaster@example.jp>\nTo: a@example.org\nSubject: DELIVERY FAILURE: User b (b@example.jp) not listed in Domino Directory\n\n" +
			"Your message\n\n  Subject: test\n\nwas not delivered to:\n\n  b@example.jp\n\nbecause:\n\n  User b (b@example.jp) not listed in Domino Directory\n", bouncereason.UserUnknown},
		{"free text: the sender line is not a recipient", "From: \"Mail Deliver System\" <MAILER-DAEMON@mx.example.jp>\nTo: a@example.org\nSubject: Returned Mail: User unknown\n\n" +
			"The original message was received at Thu, 29 Apr 2010 23:34:45 +0900 (JST)\nfrom a@example.org\n\n---The following addresses had delivery errors---\n\nb@example.co.jp [User unknown]\n", bouncereason.Filtered},
		{"sendmail transcript: the reply before the address line", "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>\nTo: a@example.org\nSubject: Returned mail: see transcript\n\n" +
			"   ----- Transcript of session follows -----\nWhile talking to mx.example.edu:\n>>> MAIL From:<a@example.org>\n<<< 550 Insecure Mail Relay\n554 <b@example.edu>... Remote protocol error\n", bouncereason.NoRelaying},
		{"not a known MTA: general rules", "From: MAILER-DAEMON@mx.example.net\nTo: a@example.org\nSubject: Undelivered Mail Returned to Sender\n\n" +
			"<b@example.com>: User b not listed in Domino Directory\n", bouncereason.Filtered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := ParseBytes([]byte(tc.msg))
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Recipients) == 0 {
				t.Fatalf("no recipients: %+v", rep)
			}
			if got := rep.Recipients[0].Reason; got != tc.want {
				t.Errorf("reason = %q, want %q (diagnostic %q)", got, tc.want, rep.Recipients[0].Diagnostic)
			}
		})
	}
}
