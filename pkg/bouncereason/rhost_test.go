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
