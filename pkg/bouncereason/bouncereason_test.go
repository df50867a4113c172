package bouncereason

import "testing"

func TestFromReply(t *testing.T) {
	tests := []struct {
		giveCode     int
		giveEnhanced string
		giveText     string
		want         string
	}{
		{550, "5.1.1", "5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in local recipient table", UserUnknown},
		{552, "5.2.2", "5.2.2 Mailbox full", MailboxFull},
		{452, "4.2.2", "The email account that you tried to reach is over quota", MailboxFull},
		{550, "5.7.1", "Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org", Blocked},
		{554, "5.7.1", "Message rejected as spam by Content Filtering", SpamDetected},
		{550, "", "5.7.26 This message does not pass authentication checks (SPF and DKIM both do not pass)", AuthFailure},
		{550, "5.7.25", "The IP address sending this message does not have a PTR record setup", RequirePTR},
		{421, "4.7.0", "Too many connections from your host.", TooManyConn},
		{552, "5.3.4", "Message size exceeds fixed maximum message size", MesgTooBig},
		{550, "5.1.2", "Host unknown", HostUnknown},
		{554, "5.4.14", "Hop count exceeded - possible mail loop", NetworkError},
		{550, "", "Relay access denied", NoRelaying},
		{250, "2.0.0", "OK", Delivered},
		{451, "4.7.1", "Client host rejected: Please try again slower", Speeding},
		{550, "5.2.1", "The email account that you tried to reach is disabled.", Suspend},
		{556, "5.1.10", "Recipient address has null MX", NotAccept},
		{0, "", "", Undefined},
		{550, "", "something went wrong", OnHold},
	}
	for _, tt := range tests {
		if got := FromReply(tt.giveCode, tt.giveEnhanced, tt.giveText); got != tt.want {
			t.Errorf("FromReply(%d, %q, %q) = %q, want %q", tt.giveCode, tt.giveEnhanced, tt.giveText, got, tt.want)
		}
	}
}

func TestHard(t *testing.T) {
	tests := []struct {
		give string
		want bool
	}{
		{UserUnknown, true}, {HostUnknown, true}, {HasMoved, true}, {NotAccept, true},
		{MailboxFull, false}, {Blocked, false}, {Suspend, false}, {Undefined, false},
	}
	for _, tt := range tests {
		if got := Hard(tt.give); got != tt.want {
			t.Errorf("Hard(%q) = %v, want %v", tt.give, got, tt.want)
		}
	}
	if HardStatus(NotAccept, "4.3.2", 421) {
		t.Errorf("HardStatus(notaccept, 4.3.2, 421) = true, want false")
	}
}

func TestFindStatusAndCode(t *testing.T) {
	tests := []struct {
		give       string
		wantStatus string
		wantCode   int
	}{
		{"550 5.1.1 <a@b.example>: unknown", "5.1.1", 550},
		{"host 192.0.2.1 said: 452 4.2.2 over quota", "4.2.2", 452},
		{"smtp; 554 5.7.28 flood", "5.7.28", 554},
		{"no code here 1.2.3.4", "", 0},
		{"#5.1.1 bad address", "5.1.1", 0},
		{"Out: 250 2.1.5 Ok In: DATA Out: 554 5.7.1 rejected", "5.7.1", 554},
		{"250 2.0.0 queued", "2.0.0", 250},
	}
	for _, tt := range tests {
		if got := FindStatus(tt.give); got != tt.wantStatus {
			t.Errorf("FindStatus(%q) = %q, want %q", tt.give, got, tt.wantStatus)
		}
		if got := FindCode(tt.give); got != tt.wantCode {
			t.Errorf("FindCode(%q) = %d, want %d", tt.give, got, tt.wantCode)
		}
	}
}
