package bouncereason

import (
	"strconv"
	"strings"
)

// Remote-host rules: some large mailbox providers answer with their own
// error codes or with texts that mean something else than the general
// phrase tables say ("550 : User unknown" from KDDI is its reception
// filter). As Sisimai's rhost modules (go-sisimai rhost/for-*.go, BSD-2,
// (C) azumakuniyuki and the sisimai development team; re-typed here, only
// the providers below), they are tried first, keyed by the recipient's
// domain or the remote MTA's host name; "" leaves the decision to the
// general rules.

// rhostClass maps a provider to the host-name suffixes that identify it.
var rhostClass = []struct {
	name     string
	suffixes []string
}{
	{"cox", []string{"cox.net"}},
	{"facebook", []string{".facebook.com"}},
	{"franceptt", []string{".laposte.net", ".orange.fr", ".wanadoo.fr"}},
	{"kddi", []string{".ezweb.ne.jp", "msmx.au.com"}},
	{"nttdocomo", []string{"mfsmax.docomo.ne.jp"}},
	{"outlook", []string{".hotmail.com"}},
	{"spectrum", []string{"charter.net"}},
	{"yahooinc", []string{".yahoodns.net"}},
}

// rhostName returns the provider a recipient domain or remote host
// belongs to, or "". A recipient domain matches when a suffix ends with
// it (ezweb.ne.jp for .ezweb.ne.jp), a host name when it ends with a
// suffix.
func rhostName(destination, remote string) string {
	destination = strings.ToLower(strings.TrimSpace(destination))
	remote = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(remote), "."))
	if destination != "" {
		for _, c := range rhostClass {
			for _, s := range c.suffixes {
				if strings.HasSuffix(s, destination) && len(destination) > 3 {
					return c.name
				}
			}
		}
	}
	if remote != "" {
		for _, c := range rhostClass {
			for _, s := range c.suffixes {
				if strings.HasSuffix(remote, s) {
					return c.name
				}
			}
		}
	}
	return ""
}

// byRemoteHost applies the provider's rules to f, "" when they say
// nothing.
func byRemoteHost(provider string, f *fact, raw string) string {
	if strings.TrimSpace(f.text) == "" {
		return ""
	}
	switch provider {
	case "kddi":
		switch {
		case strings.Contains(f.text, "550 : user unknown"):
			return Filtered
		case strings.Contains(f.text, ">: user unknown"):
			return UserUnknown
		}
	case "nttdocomo":
		switch f.status {
		case "5.1.1", "5.0.911":
			return UserUnknown
		case "5.2.0":
			return Filtered
		}
		if r := FirstPhrase(f.text, []Phrase{
			{"552 too much mail data", MailboxFull},
			{"503 bad sequence of commands", SyntaxError},
			{"504 command parameter not implemented", SyntaxError},
			{"552 too many recipients", TooManyConn},
			{"550 unknown user", UserUnknown},
		}); r != "" {
			return r
		}
		if f.status == "5.0.0" {
			switch f.cmd {
			case "RCPT":
				return UserUnknown
			case "DATA":
				return Rejected
			}
		}
	case "facebook":
		// Facebook's response codes: "RCP-P2" and the like.
		i := strings.IndexByte(raw, '-')
		if i < 3 || i+3 > len(raw) {
			return ""
		}
		return facebookCodes[raw[i-3:i+3]]
	case "outlook":
		return FirstPhrase(f.text, []Phrase{
			{"the mail could not be delivered to the recipient because the domain is not reachable", HostUnknown},
			{"requested action not taken: mailbox unavailable", UserUnknown},
		})
	case "yahooinc":
		return FirstPhrase(f.text, yahooMessages)
	case "franceptt":
		return francePTT(f.text)
	case "spectrum":
		return spectrum(raw)
	case "cox":
		if i := strings.Index(raw, "AUP#"); i >= 0 {
			code := raw[i+4:]
			if j := strings.IndexAny(code, " \t\r\n"); j >= 0 {
				code = code[:j]
			}
			if r, ok := coxCodes[code]; ok {
				return r
			}
		}
		return FirstPhrase(f.text, []Phrase{
			{"cox too many bad commands from", Blocked},
			{"too many invalid recipients", Blocked},
			{"dns check failure - try again later", RequirePTR},
			{"rejected - no rdns", RequirePTR},
			{"esmtp no data before greeting", PolicyViolation},
			{"attachment extension is forbidden", PolicyViolation},
			{"sender rejected", Rejected},
			{"esmtp server temporarily not available", SystemError},
			{"too many sessions from", TooManyConn},
			{"requested action aborted: try again later", TooManyConn},
			{"message threshold exceeded", TooManyConn},
			{"recipient rejected", UserUnknown},
		})
	}
	return ""
}

// Phrase is one line of a phrase table: a text and the reason it names.
type Phrase struct{ Text, Reason string }

// FirstPhrase returns the reason of the first phrase of table that text
// contains (as it is: the caller decides the case), or "".
func FirstPhrase(text string, table []Phrase) string {
	for _, m := range table {
		if strings.Contains(text, m.Text) {
			return m.Reason
		}
	}
	return ""
}

// yahooMessages are Yahoo's documented replies (senders.yahooinc.com).
var yahooMessages = []Phrase{
	{"yahoo requires all senders to authenticate with either spf or dkim", AuthFailure},
	{" because the ip is in spamhaus's list;", Blocked},
	{"not accepted from ip addresses on spamhaus xbl", Blocked},
	{"relaying denied for ", NoRelaying},
	{"headers are not rfc compliant", NotCompliantRFC},
	{"not accepted for policy reasons", PolicyViolation},
	{"temporarily deferred due to unexpected volume or user complaints", Rejected},
	{"due to unresolvable rfc.5321 domain", Rejected},
	{" will be permanently deferred", Rejected},
	{"user is receiving mail too quickly", Speeding},
	{" is no longer valid.", Suspend},
	{"this mailbox is disabled", Suspend},
	{"syntax error in parameters or arguments", SyntaxError},
	{"max message per connection reached", TooManyConn},
	{"dd this user doesn't have a ", UserUnknown},
	{"mailbox not found", UserUnknown},
}

// francePTTCodes are Orange's and La Poste's error numbers ("LPN007_416",
// "OFR_416 [416]"); "" says nothing.
var francePTTCodes = map[string]string{
	"101": Blocked, "102": Blocked, "103": Blocked, "104": TooManyConn,
	"305": SecurityError, "401": AuthFailure, "402": SecurityError,
	"403": Rejected, "405": Rejected, "415": Rejected, "416": UserUnknown, "417": MailboxFull,
	"420": Suspend, "421": Rejected, "426": Suspend, "505": SystemError, "506": SpamDetected,
	"510": Blocked, "514": MesgTooBig, "517": AuthFailure, "630": PolicyViolation, "999": Blocked,
}

// francePTT reads the error number after the last LPN/OFR/OUK label.
func francePTT(text string) string {
	t := strings.ReplaceAll(text, "_", "-")
	for _, label := range []string{"lpn", "lpnaaa", "ofr", "ouk"} {
		i := strings.LastIndex(t, label)
		if i < 0 {
			continue
		}
		rest, _, _ := strings.Cut(t[i+len(label):], " ")
		for code, r := range francePTTCodes {
			if strings.HasSuffix(rest, code) {
				return r
			}
		}
		break
	}
	if strings.Contains(t, "spf/dns de votre nom de domaine") {
		return AuthFailure
	}
	return ""
}

// spectrumCodes are Spectrum's (Charter's) AUP# error numbers: ranges
// from, to (inclusive).
var spectrumCodes = []struct {
	from, to int
	reason   string
}{
	{1000, 1000, Blocked}, {1010, 1010, Rejected}, {1020, 1080, Rejected}, {1090, 1090, SystemError},
	{1100, 1150, RequirePTR}, {1160, 1190, PolicyViolation}, {1200, 1210, Blocked}, {1220, 1250, Blocked},
	{1260, 1260, NetworkError}, {1300, 1340, TooManyConn}, {1350, 1490, Speeding}, {1500, 1500, Rejected},
	{1520, 1520, Rejected}, {1530, 1530, MesgTooBig}, {1540, 1550, Speeding}, {1560, 1560, PolicyViolation},
	{1580, 1580, Speeding},
}

// spectrum reads the four digits after "AUP#" ("AUP#In-1310").
func spectrum(raw string) string {
	i := strings.Index(raw, "AUP#")
	if i < 0 {
		return ""
	}
	digits := ""
	for _, c := range raw[i+4:] {
		if len(digits) == 4 {
			break
		}
		if c < '0' || c > '9' {
			digits = ""
			continue
		}
		digits += string(c)
	}
	n, err := strconv.Atoi(digits)
	if len(digits) != 4 || err != nil {
		return ""
	}
	for _, c := range spectrumCodes {
		if n >= c.from && n <= c.to {
			return c.reason
		}
	}
	return ""
}

// facebookCodes are Facebook's published response codes.
var facebookCodes = map[string]string{
	"POL-P7": AuthFailure,
	"POL-P1": Blocked, "POL-P2": Blocked, "POL-P3": Blocked, "POL-P4": Blocked,
	"POL-T1": Blocked, "POL-T2": Blocked, "POL-T3": Blocked,
	"MSG-P2": ContentError,
	"RCP-P2": Filtered, "RCP-P3": Filtered,
	"MSG-P1": MesgTooBig, "INT-P2": MesgTooBig,
	"MSG-P3": NotCompliantRFC,
	"DNS-P1": Rejected, "DNS-P2": Rejected, "DNS-T1": Rejected,
	"DNS-P3": RequirePTR, "DNS-T2": RequirePTR,
	"POL-P6": SpamDetected,
	"RCP-T4": Suspend,
	"RCP-T1": SystemError,
	"CON-T1": TooManyConn, "CON-T2": TooManyConn, "CON-T3": TooManyConn, "CON-T4": TooManyConn, "MSG-T1": TooManyConn,
	"RCP-P1": UserUnknown, "INT-P1": UserUnknown, "INT-P3": UserUnknown, "INT-P4": UserUnknown,
	"POL-P5": VirusDetected,
}

// coxCodes are Cox's AUP# error codes.
var coxCodes = map[string]string{
	"CXBL": Blocked, "CXDNS": RequirePTR, "CXSNDR": AuthFailure, "CXSMTP": Rejected,
	"CXCNCT": TooManyConn, "CXMXRT": TooManyConn, "CDRBL": Blocked,
	"CXTHRT": SecurityError, "CXMJ": SecurityError,
	"IPBL0001": Blocked, "IPBL0010": Blocked, "IPBL0100": Blocked, "IPBL0011": Blocked,
	"IPBL0101": Blocked, "IPBL0110": Blocked, "IPBL0111": Blocked, "IPBL1000": Blocked,
	"IPBL1001": Blocked, "IPBL1010": Blocked, "IPBL1011": Blocked, "IPBL1100": Blocked,
	"IPBL1101": Blocked, "IPBL1110": Blocked, "IPBL1111": Blocked, "IPBL00001": Blocked,
	"URLBL011": SpamDetected, "URLBL101": SpamDetected, "URLBL110": SpamDetected, "URLBL1001": SpamDetected,
}
