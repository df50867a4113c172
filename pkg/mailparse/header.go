package mailparse

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"
)

// maxRecipients caps Message.To.
const maxRecipients = 64

// readHeader reads a header block leniently: a line that is not a field is
// skipped (and recorded) instead of ending the header.
func (p *parser) readHeader(block []byte) textproto.Header {
	return p.readHeaderFrom(bufio.NewReaderSize(bytes.NewReader(block), 4096))
}

// readHeaderFrom reads a header block from br, as readHeader does.
func (p *parser) readHeaderFrom(br *bufio.Reader) textproto.Header {
	h, err := textproto.ReadHeader(br)
	if err == nil || err == io.EOF {
		return h // the usual case: nothing to merge
	}
	type kv struct{ k, v string }
	var fields []kv
	for i := 0; i < 4096; i++ {
		if i > 0 {
			h, err = textproto.ReadHeader(br)
		}
		fs := h.Fields()
		for fs.Next() {
			fields = append(fields, kv{fs.Key(), fs.Value()})
		}
		if err == nil || err == io.EOF {
			break
		}
		p.m.defect(DefectHeaderSyntax)
		if _, perr := br.Peek(1); perr != nil {
			break
		}
	}
	// Header.Add puts a field first, so add in reverse to keep the order.
	var all textproto.Header
	for i := len(fields) - 1; i >= 0; i-- {
		all.Add(fields[i].k, fields[i].v)
	}
	return all
}

// topHeader fills the header-derived fields of the message.
func (p *parser) topHeader(h textproto.Header) {
	m := p.m
	fields := h.Fields()
	for fields.Next() {
		m.Header = append(m.Header, Field{Name: fields.Key(), Value: capString(fields.Value(), p.lim.MaxFieldBytes)})
	}
	m.Subject = DecodeHeader(capString(h.Get("Subject"), p.lim.MaxFieldBytes))
	if v := h.Get("From"); v != "" {
		if a := ParseAddressList(capString(v, p.lim.MaxFieldBytes), 1); len(a) > 0 {
			m.From, m.HasFrom = a[0], true
		}
	}
	if v := h.Get("Reply-To"); v != "" {
		if a := ParseAddressList(capString(v, p.lim.MaxFieldBytes), 1); len(a) > 0 {
			m.ReplyTo, m.HasReplyTo = a[0], true
		}
	}
	for _, k := range []string{"To", "Cc"} {
		for _, v := range h.Values(k) {
			if len(m.To) >= maxRecipients {
				break
			}
			m.To = append(m.To, ParseAddressList(capString(v, p.lim.MaxFieldBytes), maxRecipients-len(m.To))...)
		}
	}
}

// capString cuts s to at most n bytes without splitting a UTF-8 sequence.
func capString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// lenientCharsetReader decodes charset to UTF-8 and, for a charset it does
// not know, passes the bytes through so that the caller's UTF-8 repair makes
// the best of them.
func lenientCharsetReader(cs string, r io.Reader) (io.Reader, error) {
	if d, err := charset.Reader(cs, r); err == nil {
		return d, nil
	}
	return r, nil
}

// DecodeHeader resolves RFC 2047 encoded words in a header value. Words in an
// unknown charset or with broken encoding are kept as written; the result is
// valid UTF-8.
func DecodeHeader(v string) string {
	if strings.Contains(v, "=?") {
		dec := mime.WordDecoder{CharsetReader: lenientCharsetReader}
		if d, err := dec.DecodeHeader(v); err == nil {
			v = d
		}
	}
	return toUTF8(v)
}

// toUTF8 returns s if it is valid UTF-8 and otherwise reads it as
// Windows-1252, the usual charset of undeclared 8-bit mail.
func toUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return string(latin1ToUTF8([]byte(s)))
}

// ParseAddressList parses up to max mailboxes from an address-list header
// value. Where RFC 5322 syntax fails it falls back to picking out anything
// that looks like local@domain, so that broken From lines of spam still yield
// a domain.
func ParseAddressList(v string, max int) []Address {
	ap := mail.AddressParser{WordDecoder: &mime.WordDecoder{CharsetReader: lenientCharsetReader}}
	var out []Address
	if list, err := ap.ParseList(v); err == nil {
		for _, a := range list {
			if len(out) >= max {
				break
			}
			out = append(out, newAddress(toUTF8(a.Name), a.Address))
		}
		return out
	}
	// Fallback: each comma-separated piece, address in <> or the word with @.
	for _, piece := range strings.Split(v, ",") {
		if len(out) >= max {
			break
		}
		piece = strings.TrimSpace(piece)
		if piece == "" {
			continue
		}
		name, addr := piece, ""
		if i := strings.LastIndexByte(piece, '<'); i >= 0 {
			addr = piece[i+1:]
			if j := strings.IndexByte(addr, '>'); j >= 0 {
				addr = addr[:j]
			}
			name = piece[:i]
		} else {
			for _, w := range strings.Fields(piece) {
				if strings.Contains(w, "@") {
					addr = w
				}
			}
			name = strings.Replace(piece, addr, "", 1)
		}
		name = strings.Trim(strings.TrimSpace(DecodeHeader(name)), `"'`)
		out = append(out, newAddress(name, strings.Trim(addr, " \t\"'()[]")))
	}
	return out
}

func newAddress(name, addr string) Address {
	a := Address{Name: name, Addr: addr}
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		a.Domain = strings.ToLower(strings.TrimRight(addr[i+1:], ".>"))
	}
	return a
}
