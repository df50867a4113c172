package mailparse

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"net/mail"
	nettextproto "net/textproto"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"
)

// maxRecipients caps Message.To.
const maxRecipients = 64

// readHeader reads a header block leniently: a line that is not a field is
// skipped (and recorded) instead of ending the header.
func (p *parser) readHeader(block []byte) fieldList {
	if fl, ok := parseFields(block); ok {
		return fl
	}
	h := p.readHeaderFrom(bufio.NewReaderSize(bytes.NewReader(block), 4096))
	var fl fieldList
	fs := h.Fields()
	for fs.Next() {
		fl = append(fl, Field{Name: fs.Key(), Value: fs.Value()})
	}
	return fl
}

// fieldList is a header block's fields in order, as go-message's
// textproto.ReadHeader reads them: names canonical, values unfolded.
type fieldList []Field

// Get returns the first value of the field named key, which must be in
// canonical form ("Content-Type").
func (fl fieldList) Get(key string) string {
	for _, f := range fl {
		if f.Name == key {
			return f.Value
		}
	}
	return ""
}

// fieldGetter is a header that parts of a message are read by: the
// top-level fieldList, or a go-message header of an inner part.
type fieldGetter interface {
	Get(key string) string
}

var (
	_ fieldGetter = fieldList(nil)
	_ fieldGetter = (*textproto.Header)(nil)
)

// parseFields reads a well-formed header block exactly as
// textproto.ReadHeader does (line ends, continuation lines, name
// canonicalisation, unfolding), but from one copy of the block: names and
// one-line values are substrings of it, where ReadHeader allocates a line
// buffer, a field, a name and a value per field. It reports false for a
// block ReadHeader would reject (a leading blank, a line without a colon, a
// bad name byte), which is then read by the lenient path.
func parseFields(block []byte) (fieldList, bool) {
	if len(block) == 0 {
		return nil, true
	}
	if block[0] == ' ' || block[0] == '\t' {
		return nil, false
	}
	s := string(block)
	var arena []byte
	fl := make(fieldList, 0, min(bytes.Count(block, []byte{'\n'})+1, 64))
	for pos := 0; pos < len(s); {
		line, next := headerLine(s, pos)
		if line == "" {
			break // a blank line ends the header
		}
		pos = next
		colon := strings.IndexByte(line, ':')
		if colon < 0 {
			return nil, false
		}
		key := trimBlanks(line[:colon])
		for i := 0; i < len(key); i++ {
			if c := key[i]; c < 33 || c > 126 {
				return nil, false
			}
		}
		value := trimBlanks(line[colon+1:])
		if pos < len(s) && (s[pos] == ' ' || s[pos] == '\t') {
			// Folded: pieces trimmed, empty ones dropped, joined by a
			// space, into one buffer for all folded fields. Unfolding
			// never lengthens text, so a buffer the size of the block
			// never moves and the values can point into it.
			if arena == nil {
				arena = make([]byte, 0, len(s))
			}
			start := len(arena)
			arena = append(arena, value...)
			for pos < len(s) && (s[pos] == ' ' || s[pos] == '\t') {
				var cont string
				cont, pos = headerLine(s, pos)
				if cont = trimBlanks(cont); cont != "" {
					if len(arena) > start {
						arena = append(arena, ' ')
					}
					arena = append(arena, cont...)
				}
			}
			value = ownedString(arena[start:])
		}
		key = nettextproto.CanonicalMIMEHeaderKey(key)
		if key == "" {
			continue
		}
		fl = append(fl, Field{Name: key, Value: value})
	}
	return fl, true
}

// headerLine returns the line of s starting at pos without its "\n" or
// "\r\n" (bufio.Reader.ReadLine's line), and where the next line starts.
func headerLine(s string, pos int) (line string, next int) {
	i := strings.IndexByte(s[pos:], '\n')
	if i < 0 {
		return s[pos:], len(s)
	}
	line = s[pos : pos+i]
	if strings.HasSuffix(line, "\r") {
		line = line[:len(line)-1]
	}
	return line, pos + i + 1
}

// trimBlanks removes leading and trailing spaces and tabs.
func trimBlanks(s string) string {
	i, j := 0, len(s)
	for i < j && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	for j > i && (s[j-1] == ' ' || s[j-1] == '\t') {
		j--
	}
	return s[i:j]
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
func (p *parser) topHeader(h fieldList) {
	m := p.m
	if len(h) > 0 {
		m.Header = make([]Field, len(h))
	}
	for i, f := range h {
		m.Header[i] = Field{Name: f.Name, Value: capString(f.Value, p.lim.MaxFieldBytes)}
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
		for _, f := range h {
			if len(m.To) >= maxRecipients {
				break
			}
			if f.Name == k {
				m.To = append(m.To, ParseAddressList(capString(f.Value, p.lim.MaxFieldBytes), maxRecipients-len(m.To))...)
			}
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
