package mailparse

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"
)

type parser struct {
	lim      Limits
	m        *Message
	ps       *Parser // buffers
	textLeft int     // text bytes still allowed
	// bodyLen is the size of the top-level body: no part decodes to more,
	// so read buffers need no more room.
	bodyLen int
}

// textSpace returns the free tail of the text arena, to read a part into.
func (p *parser) textSpace() []byte {
	a := p.ps.arena
	return a[len(a):]
}

// used records that buf, filled from the tail textSpace returned, holds a
// part's text now. When the part outgrew the tail it was moved to an array
// of its own, and the arena is left as it was.
func (p *parser) used(tail, buf []byte) {
	if len(buf) > 0 && cap(tail) > 0 && unsafe.SliceData(buf) == unsafe.SliceData(tail) {
		p.ps.arena = p.ps.arena[:len(p.ps.arena)+len(buf)]
	}
}

// contentType parses a Content-Type value. A value mime.ParseMediaType
// rejects (spam often has duplicate or unquoted parameters) is read token by
// token instead.
func contentType(v string) (mediaType string, params map[string]string, ok bool) {
	if v == "" {
		return "text/plain", nil, true
	}
	mt, ps, err := mime.ParseMediaType(v)
	if err == nil {
		return mt, ps, true
	}
	parts := strings.Split(v, ";")
	mt = strings.ToLower(strings.TrimSpace(parts[0]))
	params = map[string]string{}
	for _, kv := range parts[1:] {
		k, val, found := strings.Cut(kv, "=")
		if !found {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if _, dup := params[k]; !dup {
			params[k] = strings.Trim(strings.TrimSpace(val), `"'`)
		}
	}
	if !strings.Contains(mt, "/") {
		mt = "text/plain"
	}
	return mt, params, false
}

// entity visits one MIME entity whose header is h and whose still-encoded
// body is read from body. whole is the body as bytes when the caller has it
// (top level), for a fallback when a multipart has no readable parts.
func (p *parser) entity(h fieldGetter, body io.Reader, depth int, whole []byte) {
	m := p.m
	if depth > m.Depth {
		m.Depth = depth
	}
	mt, params, ok := contentType(h.Get("Content-Type"))
	if !ok {
		m.defect(DefectBadContentType)
	}
	if strings.HasPrefix(mt, "multipart/") {
		if depth >= p.lim.MaxDepth {
			m.defect(DefectTooDeep)
			return
		}
		if mt == "multipart/alternative" {
			m.Alternative = true
		}
		boundary := params["boundary"]
		if boundary == "" {
			m.defect(DefectNoBoundary)
			p.leaf(h, "text/plain", params, body)
			return
		}
		mr := textproto.NewMultipartReader(body, boundary)
		n := 0
		for {
			if m.Parts >= p.lim.MaxParts {
				m.defect(DefectTooManyParts)
				return
			}
			part, err := mr.NextPart()
			if err != nil {
				if err != io.EOF {
					m.defect(DefectMultipartSyntax)
				}
				break
			}
			n++
			p.entity(&part.Header, part, depth+1, nil)
		}
		if n == 0 && whole != nil {
			// The boundary never appears: read the body as text so its words
			// still count.
			p.leaf(h, "text/plain", nil, bytes.NewReader(whole))
		}
		return
	}
	if mt == "message/rfc822" || mt == "message/global" {
		if depth >= p.lim.MaxDepth {
			m.defect(DefectTooDeep)
			return
		}
		br := bufio.NewReaderSize(decodeTransfer(h.Get("Content-Transfer-Encoding"), body, m), 4096)
		inner := p.readHeaderFrom(br)
		// The attached message's subject is text the recipient reads.
		if s := inner.Get("Subject"); s != "" {
			p.addText(&m.Text, DecodeHeader(s)+"\n")
		}
		p.entity(&inner, br, depth+1, nil)
		return
	}
	p.leaf(h, mt, params, body)
}

// leaf handles a non-multipart entity: text is decoded and kept, anything
// else is described as an attachment.
func (p *parser) leaf(h fieldGetter, mt string, params map[string]string, body io.Reader) {
	m := p.m
	m.Parts++
	disp, dparams, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
	name := dparams["filename"]
	if name == "" {
		name = params["name"]
	}
	name = DecodeHeader(name)
	isText := mt == "text/plain" || mt == "text/html" || mt == "text/enriched" || mt == "text/richtext"
	if isText && disp != "attachment" && name == "" {
		cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
		if cte == "base64" {
			m.Base64Text = true
		}
		cs := strings.ToLower(strings.Trim(params["charset"], `"' `))
		if cs != "" && len(m.TextCharsets) < 8 && !contains(m.TextCharsets, cs) {
			m.TextCharsets = append(m.TextCharsets, cs)
		}
		rawLimit := p.textLeft
		if mt == "text/html" {
			// Markup takes room: allow more raw HTML than text kept.
			rawLimit *= 4
		}
		var raw []byte
		var more bool
		tail := p.textSpace()
		if cte == "quoted-printable" {
			// Decoded in memory: QP never grows, so reading 3x the budget of
			// encoded bytes is enough to fill it.
			enc, encMore := readCapped(p.ps.qpBuf[:0], body, 3*rawLimit, p.bodyLen)
			raw, more = decodeQP(tail, enc, m), encMore
			p.ps.qpBuf = enc
		} else {
			raw, more = readCapped(tail, decodeTransfer(cte, body, m), rawLimit, p.bodyLen)
		}
		p.used(tail, raw)
		if more {
			m.defect(DefectTextTruncated)
		}
		text := p.decodeCharset(raw, cs)
		if mt == "text/html" {
			m.HTMLParts++
			p.html(text)
		} else {
			m.TextParts++
			p.addText(&m.Text, text)
			p.scanText(text)
		}
		return
	}
	if strings.HasPrefix(mt, "image/") {
		m.Images++
	}
	p.attachment(h, mt, name, body)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// addText appends s to *dst within the text budget.
func (p *parser) addText(dst *string, s string) {
	if p.textLeft <= 0 {
		if s != "" {
			p.m.defect(DefectTextTruncated)
		}
		return
	}
	if len(s) > p.textLeft {
		s = capString(s, p.textLeft)
		p.m.defect(DefectTextTruncated)
	}
	p.textLeft -= len(s)
	if *dst == "" {
		*dst = s
		return
	}
	*dst += "\n" + s
}

// readCapped reads at most n bytes from r into buf (a new buffer when buf
// has no room), reports whether more
// followed, and drains the rest so the enclosing multipart can go on. At
// most hint bytes are expected, which sizes a new buffer.
func readCapped(buf []byte, r io.Reader, n, hint int) ([]byte, bool) {
	n = max(n, 0)
	if cap(buf) == 0 {
		// One byte more than can come, so the end is seen without growing.
		buf = make([]byte, 0, min(n, max(hint, 512))+1)
	}
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		k, err := r.Read(buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+k]
		if err != nil {
			break
		}
	}
	extra, _ := io.Copy(io.Discard, r)
	return buf, extra > 0
}

// decodeTransfer undoes a Content-Transfer-Encoding. Unknown encodings are
// read as they are.
func decodeTransfer(cte string, r io.Reader, m *Message) io.Reader {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		return base64.NewDecoder(base64.RawStdEncoding, &base64Filter{r: r, m: m})
	case "quoted-printable":
		return &qpReader{r: quotedprintable.NewReader(r), m: m}
	case "", "7bit", "8bit", "binary":
		return r
	default:
		m.defect(DefectUnknownEncoding)
		return r
	}
}

// base64Filter passes only base64 alphabet characters, so that line breaks,
// stray characters and padding in the middle of a body do not stop decoding.
type base64Filter struct {
	r    io.Reader
	m    *Message
	junk bool
}

func (f *base64Filter) Read(p []byte) (int, error) {
	for {
		n, err := f.r.Read(p)
		w := 0
		for _, c := range p[:n] {
			switch {
			case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/':
				p[w] = c
				w++
			case c == '=', c == '\r', c == '\n', c == ' ', c == '\t':
			default:
				if !f.junk {
					f.junk = true
					f.m.defect(DefectBadBase64)
				}
			}
		}
		if w > 0 || err != nil {
			return w, err
		}
	}
}

// decodeQP decodes quoted-printable leniently (RFC 2045 6.7): soft line
// breaks are removed, =XX becomes the byte, and an "=" that starts neither is
// kept as written (and recorded) rather than failing the part.
func decodeQP(dst, src []byte, m *Message) []byte {
	out := dst[:0]
	if cap(out) < len(src) {
		out = make([]byte, 0, len(src))
	}
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c != '=' {
			out = append(out, c)
			continue
		}
		rest := src[i+1:]
		switch {
		case len(rest) >= 2 && isHex(rest[0]) && isHex(rest[1]):
			out = append(out, unhex(rest[0])<<4|unhex(rest[1]))
			i += 2
		case len(rest) >= 1 && rest[0] == '\n':
			i++
		case len(rest) >= 2 && rest[0] == '\r' && rest[1] == '\n':
			i += 2
		default:
			// "= " or "=\t" before a line break is a soft break with
			// trailing blanks.
			j := 0
			for j < len(rest) && (rest[j] == ' ' || rest[j] == '\t') {
				j++
			}
			if j > 0 && (j == len(rest) || rest[j] == '\n' || rest[j] == '\r') {
				i += j
				if i+1 < len(src) && src[i+1] == '\r' {
					i++
				}
				if i+1 < len(src) && src[i+1] == '\n' {
					i++
				}
				continue
			}
			if len(rest) > 0 {
				m.defect(DefectBadQP)
			}
			out = append(out, '=')
		}
	}
	return out
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' || c >= 'a' && c <= 'f'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// qpReader stops quietly at the first undecodable quoted-printable sequence,
// keeping what came before.
type qpReader struct {
	r   io.Reader
	m   *Message
	bad bool
}

func (q *qpReader) Read(p []byte) (int, error) {
	if q.bad {
		return 0, io.EOF
	}
	n, err := q.r.Read(p)
	if err != nil && err != io.EOF {
		q.bad = true
		q.m.defect(DefectBadQP)
		return n, io.EOF
	}
	return n, err
}

// ownedString returns b as a string without copying it. b must be a buffer
// that nothing writes to afterwards: a part's text is read into a buffer of
// its own, and copying it again was a fifth of the parser's allocation.
func ownedString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// decodeCharset converts text in charset cs to UTF-8. An unknown charset, or
// bytes that are not what was declared, fall back to UTF-8 when valid and to
// Windows-1252 otherwise.
func (p *parser) decodeCharset(b []byte, cs string) string {
	switch cs {
	case "", "us-ascii", "utf-8", "utf8", "ascii", "iso-8859-1", "latin1", "windows-1252":
		if utf8.Valid(b) {
			return ownedString(b)
		}
		if cs == "utf-8" || cs == "utf8" {
			p.m.defect(DefectBadUTF8)
		}
		return ownedString(latin1ToUTF8(b))
	}
	r, err := charset.Reader(cs, bytes.NewReader(b))
	if err != nil {
		p.m.defect(DefectUnknownCharset)
		if utf8.Valid(b) {
			return ownedString(b)
		}
		return ownedString(latin1ToUTF8(b))
	}
	out, err := io.ReadAll(r)
	if err != nil {
		p.m.defect(DefectUnknownCharset)
	}
	return strings.ToValidUTF8(string(out), "\uFFFD")
}

// cp1252 maps bytes 0x80-0x9f of Windows-1252 to runes; 0 marks the five
// unassigned bytes, which are read as Latin-1 control characters.
var cp1252 = [32]rune{
	0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017D, 0,
	0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178,
}

// latin1ToUTF8 reads b as Windows-1252 (a superset of the printable
// ISO-8859-1) and returns it as UTF-8.
func latin1ToUTF8(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/4)
	for _, c := range b {
		switch {
		case c < 0x80:
			out = append(out, c)
		case c < 0xa0 && cp1252[c-0x80] != 0:
			out = utf8.AppendRune(out, cp1252[c-0x80])
		default:
			out = utf8.AppendRune(out, rune(c))
		}
	}
	return out
}
