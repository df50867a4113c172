package ingest

import (
	"bytes"
	"fmt"
	"net/mail"
	"strings"

	"github.com/emersion/go-sasl"

	"github.com/outflowmail/outflow/pkg/envelope"
)

// trace prepends the Received header (RFC 5321 4.4) naming the tenant and
// the authenticated identity, and adds Message-ID and Date (RFC 5322 3.6)
// when the submission lacks them, as a submission server may (RFC 6409 8).
// It records the Message-ID in env.
func (ss *session) trace(env *envelope.Envelope, raw []byte) []byte {
	hdr := headerBlock(raw)
	msgID := headerValue(hdr, "Message-Id")
	hasDate := headerValue(hdr, "Date") != ""
	date := env.Received.UTC().Format("Mon, 02 Jan 2006 15:04:05 -0700")

	var b bytes.Buffer
	b.Grow(len(raw) + 512)
	helo := ss.conn.Hostname()
	if helo == "" {
		helo = "unknown"
	}
	// RFC 3848 protocol names: S for TLS, A for AUTH.
	with := "ESMTP"
	if _, isTLS := ss.conn.TLSConnectionState(); isTLS {
		with += "S"
	}
	if !strings.HasPrefix(env.AuthID, "ip:") {
		with += "A"
	}
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s (Outflow) with %s id %s\r\n\t(tenant %s, identity %s);\r\n\t%s\r\n",
		sanitize(helo), env.ClientIP, ss.s.cfg.Hostname, with, env.ID, env.Tenant, sanitize(env.AuthID), date)
	if msgID == "" {
		msgID = env.ID + "@" + ss.s.cfg.Hostname
		fmt.Fprintf(&b, "Message-ID: <%s>\r\n", msgID)
	}
	if !hasDate {
		fmt.Fprintf(&b, "Date: %s\r\n", date)
	}
	env.MessageID = strings.Trim(strings.TrimSpace(msgID), "<>")
	b.Write(raw)
	return b.Bytes()
}

// sanitize keeps client-supplied text from breaking the header.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == '(' || r == ')' || r == ';' {
			return '_'
		}
		return r
	}, s)
}

// headerBlock returns the header section of a message: everything before
// the first empty line (RFC 5322 2.1), or all of it.
func headerBlock(raw []byte) []byte {
	if bytes.HasPrefix(raw, []byte("\r\n")) || bytes.HasPrefix(raw, []byte("\n")) {
		return nil
	}
	i := bytes.Index(raw, []byte("\n\r\n"))
	j := bytes.Index(raw, []byte("\n\n"))
	switch {
	case i >= 0 && (j < 0 || i < j):
		return raw[:i+1]
	case j >= 0:
		return raw[:j+1]
	}
	return raw
}

// headerValue returns the unfolded value of the first field named name in
// a header block, or "".
func headerValue(hdr []byte, name string) string {
	for len(hdr) > 0 {
		line := hdr
		if k := bytes.IndexByte(hdr, '\n'); k >= 0 {
			line, hdr = hdr[:k], hdr[k+1:]
		} else {
			hdr = nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		if !strings.EqualFold(strings.TrimSpace(string(line[:colon])), name) {
			continue
		}
		v := strings.TrimSpace(string(line[colon+1:]))
		// Folded continuation lines (RFC 5322 2.2.3).
		for len(hdr) > 0 && (hdr[0] == ' ' || hdr[0] == '\t') {
			k := bytes.IndexByte(hdr, '\n')
			if k < 0 {
				k = len(hdr) - 1
			}
			v += " " + strings.TrimSpace(string(hdr[:k+1]))
			hdr = hdr[k+1:]
		}
		if name == "Message-Id" {
			if a, err := mail.ParseAddress(v); err == nil {
				return a.Address
			}
		}
		return v
	}
	return ""
}

// loginServer is the server side of the obsolete but still common LOGIN
// SASL mechanism (draft-murchison-sasl-login): two prompts, username then
// password. go-sasl ships only the client.
type loginServer struct {
	authenticate func(user, pass string) error
	user         string
	step         int
}

var _ sasl.Server = (*loginServer)(nil)

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step++
		if len(resp) > 0 { // initial response carries the username
			l.user = string(resp)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.user = string(resp)
		l.step++
		return []byte("Password:"), false, nil
	case 2:
		l.step++
		return nil, true, l.authenticate(l.user, string(resp))
	}
	return nil, true, errAuthInvalid
}
