package bouncereason

import "testing"

func TestRemoteHostRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Input
		want string
	}{
		{"kddi filter", Input{Status: "5.0.0", Code: 550, Text: "550 : User unknown", Destination: "ezweb.ne.jp"}, Filtered},
		{"kddi unknown", Input{Status: "5.0.0", Code: 550, Text: "550 <a@ezweb.ne.jp>: User unknown", Destination: "ezweb.ne.jp"}, UserUnknown},
		{"kddi by remote host", Input{Text: "550 <a@au.com>: User unknown", RemoteHost: "msmx.au.com"}, UserUnknown},
		{"docomo after data", Input{Status: "5.0.0", Text: "550 Unknown user a@docomo.ne.jp", Command: "DATA", RemoteHost: "mfsmax.docomo.ne.jp"}, UserUnknown},
		{"docomo 5.2.0", Input{Status: "5.2.0", Text: "554 5.0.0 Service unavailable", RemoteHost: "mfsmax.docomo.ne.jp"}, Filtered},
		{"facebook code", Input{Status: "5.1.1", Text: "550 5.1.1 RCP-P2 Refused due to recipient preferences", Destination: "facebook.com"}, Filtered},
		{"cox code", Input{Status: "5.1.0", Text: "550 5.1.0 <a@b> sender rejected. AUP#CDRBL", Destination: "cox.net"}, Blocked},
		{"yahoo after data", Input{Status: "5.0.0", Code: 554, Command: "DATA", Text: "554 delivery error: dd This user doesn't have a yahoo.com account (a@yahoo.com) [0]", RemoteHost: "mta6.am0.yahoodns.net"}, UserUnknown},
		{"la poste code", Input{Status: "5.5.0", Code: 550, Command: "DATA", Text: "550 5.5.0 Adresse destinataire invalide. Invalid recipient. LPN007_416", Destination: "laposte.net"}, UserUnknown},
		{"orange code", Input{Status: "4.2.0", Code: 421, Text: "421 4.2.0 Service refuse. Service refused, please try later. OFR005_505 [505]", Destination: "orange.fr"}, SystemError},
		{"hotmail mailbox unavailable", Input{Status: "5.5.0", Code: 550, Text: "550 Requested action not taken: mailbox unavailable", Destination: "hotmail.com"}, UserUnknown},
		{"spectrum code range", Input{Status: "5.1.0", Code: 550, Text: "550 5.1.0 <a@b> sender rejected. AUP#In-1310", Destination: "charter.net"}, TooManyConn},
		{"other host: general rules", Input{Status: "5.0.0", Code: 550, Text: "550 : User unknown", Destination: "example.org"}, Filtered},
		{"short destination does not match", Input{Status: "5.1.1", Text: "550 5.1.1 RCP-P2 user unknown", Destination: "com"}, UserUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.in); got != tc.want {
				t.Errorf("Classify(%+v) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
