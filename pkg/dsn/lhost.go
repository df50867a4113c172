package dsn

import (
	"strings"

	"github.com/emersion/go-message/textproto"

	"github.com/outflowmail/outflow/pkg/bouncereason"
)

// Per-MTA wording. Some MTAs write their own verdict in words of their
// own ("not listed in Domino Directory", qmail's "Sorry, I couldn't find
// a mail exchanger or IP address"), which the general phrase tables of
// bouncereason do not know or read otherwise. As Sisimai's lhost modules
// (go-sisimai lhost/via-*.go, BSD-2, (C) azumakuniyuki and the sisimai
// development team; tables re-typed, only the MTAs below), the MTA is
// recognised by its headers or its boilerplate, and its table names the
// reason of a recipient's diagnostic; bouncereason weighs it
// (Input.Reason).

// mta is one reporting MTA: how to recognise its bounces and its table.
type mta struct {
	name string
	// is recognises the MTA from the bounce's header and body.
	is func(h textproto.Header, subject, body string) bool
	// reason reads the MTA's verdict from one recipient's diagnostic.
	reason func(diag string) string
}

// phrase is a line of an MTA's table, matched case-sensitively, as the
// MTA writes it.
type phrase = bouncereason.Phrase

// table is a reason func over a phrase table.
func table(t []phrase) func(string) string {
	return func(diag string) string { return bouncereason.FirstPhrase(diag, t) }
}

var mtas = []mta{
	{
		name: "domino",
		is: func(_ textproto.Header, subject, _ string) bool {
			return strings.HasPrefix(subject, "DELIVERY FAILURE:") || strings.Contains(subject, "DELIVERY_FAILURE")
		},
		reason: table([]phrase{
			{Text: "Cannot route mail to user", Reason: bouncereason.Filtered},
			{Text: "Several matches found in Domino Directory", Reason: bouncereason.SystemError},
			{Text: "not listed in Domino Directory", Reason: bouncereason.UserUnknown},
			{Text: "not listed in public Name & Address Book", Reason: bouncereason.UserUnknown},
			{Text: "no se encuentra en el Directorio de Domino", Reason: bouncereason.UserUnknown},
			{Text: "non répertorié dans l'annuaire Domino", Reason: bouncereason.UserUnknown},
		}),
	},
	{
		name: "exchange2003",
		is: func(h textproto.Header, _, _ string) bool {
			if h.Has("X-Ms-Embedded-Report") {
				return true
			}
			xm := h.Get("X-Mailer")
			if strings.HasPrefix(xm, "Internet Mail Service (") || strings.HasPrefix(xm, "Microsoft Exchange Server Internet Mail Connector") {
				return true
			}
			if strings.HasPrefix(h.Get("X-Mimeole"), "Produced By Microsoft Exchange") {
				return true
			}
			for _, r := range h.Values("Received") {
				if strings.Contains(r, " with Internet Mail Service (") {
					return true
				}
			}
			return false
		},
		reason: exchange2003Reason,
	},
	{
		name: "imailserver",
		is: func(h textproto.Header, subject, _ string) bool {
			return strings.HasPrefix(subject, "Undeliverable Mail ") || strings.HasPrefix(h.Get("X-Mailer"), "<SMTP32 v")
		},
		reason: table([]phrase{
			{Text: "Unknown host", Reason: bouncereason.HostUnknown},
			{Text: "Unknown user", Reason: bouncereason.UserUnknown},
			{Text: "Invalid final delivery userid", Reason: bouncereason.UserUnknown},
			{Text: "User mailbox exceeds allowed size", Reason: bouncereason.MailboxFull},
			{Text: "Requested action not taken: virus detected", Reason: bouncereason.VirusDetected},
			{Text: "Blacklisted URL in message", Reason: bouncereason.SpamDetected},
			{Text: "Delivery failed ", Reason: bouncereason.Expired},
		}),
	},
	{
		name: "trendmicro",
		is: func(h textproto.Header, _, body string) bool {
			return strings.HasPrefix(h.Get("From"), `"InterScan`) || strings.Contains(h.Get("Content-Type"), "InterScan") ||
				strings.Contains(body, " InterScan ")
		},
		reason: func(diag string) string {
			if strings.Contains(diag, "Unable to deliver") {
				return bouncereason.UserUnknown
			}
			return ""
		},
	},
	{
		name: "qmail",
		is: func(h textproto.Header, subject, _ string) bool {
			if subject == "failure notice" || subject == "Failure Notice" {
				return true
			}
			for _, r := range h.Values("Received") {
				if i := strings.Index(r, "(qmail "); i >= 0 {
					rest := r[i:]
					if strings.Contains(rest, "invoked for bounce)") || strings.Contains(rest, "invoked from ") && strings.Contains(rest, "network)") {
						return true
					}
				}
			}
			return false
		},
		reason: qmailReason,
	},
}

// exchange2003Codes are Exchange 2003's MSEXCH error codes.
var exchange2003Codes = map[string]string{
	"000C05A6": bouncereason.UserUnknown, // Unknown Recipient
	"000C0595": bouncereason.Filtered,    // Ambiguous Recipient
	"00010256": bouncereason.SystemError, // Too many recipients
	"000D06B5": bouncereason.SystemError, // No proxy for recipient
	"00120270": bouncereason.NetworkError,
	"00050311": bouncereason.ContentError, "000502CC": bouncereason.ContentError,
	"000B0981": bouncereason.SecurityError, // 502 Server does not support AUTH
}

// exchange2003Reason reads the code in "MSEXCH:IMS:... 0 (000C05A6) Unknown Recipient".
func exchange2003Reason(diag string) string {
	i := strings.Index(diag, "MSEXCH:")
	if i < 0 {
		return ""
	}
	rest := diag[i:]
	o := strings.IndexByte(rest, '(')
	if o < 0 {
		return ""
	}
	c := strings.IndexByte(rest[o:], ')')
	if c < 0 {
		return ""
	}
	return exchange2003Codes[rest[o+1:o+c]]
}

// qmail's own messages (qmail-remote.c, qmail-local.c, qmail-send.c and
// the qmail-ldap patch).
var qmailMessages = []phrase{
	{Text: "Sorry, I couldn't find any host ", Reason: bouncereason.HostUnknown},
	{Text: "disk quota exceeded", Reason: bouncereason.MailboxFull},
	{Text: "Message size exceeds fixed maximum message size:", Reason: bouncereason.MesgTooBig},
	{Text: "Sorry, I wasn't able to establish an SMTP connection", Reason: bouncereason.NetworkError},
	{Text: "Sorry. Although I'm listed as a best-preference MX or A for that host", Reason: bouncereason.NetworkError},
	{Text: "Sorry, I couldn't find a mail exchanger or IP address", Reason: bouncereason.NotAccept},
	{Text: "bad interpreter: No such file or directory", Reason: bouncereason.SystemError},
	{Text: "system error", Reason: bouncereason.SystemError},
	{Text: "Unable to", Reason: bouncereason.SystemError},
	{Text: "Requested action not taken: mailbox unavailable (not enough free space)", Reason: bouncereason.SystemFull},
	{Text: "no mailbox here by that name", Reason: bouncereason.UserUnknown},
	{Text: "The message exeeded the maximum size the user accepts", Reason: bouncereason.ExceedLimit},
	{Text: "Mailaddress is administrativly disabled", Reason: bouncereason.Suspend},
	{Text: "Mailaddress is administrativley disabled", Reason: bouncereason.Suspend},
	{Text: "Mailaddress is administratively disabled", Reason: bouncereason.Suspend},
	{Text: "Mailaddress is administrativeley disabled", Reason: bouncereason.Suspend},
	{Text: "Automatic homedir creator crashed", Reason: bouncereason.SystemError},
	{Text: "Illegal value in LDAP attribute", Reason: bouncereason.SystemError},
	{Text: "LDAP attribute is not given but mandatory", Reason: bouncereason.SystemError},
	{Text: "Timeout while performing search on LDAP server", Reason: bouncereason.SystemError},
	{Text: "Too many results returned but needs to be unique", Reason: bouncereason.SystemError},
	{Text: "Permanent error while executing qmail-forward", Reason: bouncereason.SystemError},
	{Text: "Temporary error in automatic homedir creation", Reason: bouncereason.SystemError},
	{Text: "Temporary error while executing qmail-forward", Reason: bouncereason.SystemError},
	{Text: "Temporary failure in LDAP lookup", Reason: bouncereason.SystemError},
	{Text: "Unable to login into LDAP server, bad credentials", Reason: bouncereason.SystemError},
}

func qmailReason(diag string) string {
	const expired = "this message has been in the queue too long."
	// The remote host refused the recipient and qmail gave up later:
	// the remote reply decides, not qmail's words.
	if i := strings.Index(diag, " does not like recipient."); i >= 0 && strings.Contains(diag[i:], expired) {
		return ""
	}
	// The remote host's reply, when quoted, before qmail's own words.
	if i := strings.Index(diag, "Remote host said:"); i >= 0 {
		if r := bouncereason.FirstPhrase(diag[i:], qmailMessages); r != "" {
			return r
		}
	}
	if r := bouncereason.FirstPhrase(diag, qmailMessages); r != "" {
		return r
	}
	if strings.Contains(diag, expired) {
		return bouncereason.Expired
	}
	return ""
}

// reportingMTA returns the MTA whose own wording the bounce carries, or
// nil.
func reportingMTA(h textproto.Header, subject, body string) *mta {
	for i := range mtas {
		if mtas[i].is(h, subject, body) {
			return &mtas[i]
		}
	}
	return nil
}
