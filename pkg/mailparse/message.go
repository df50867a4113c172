// Package mailparse turns a raw RFC 5322 message, as a tenant submits it, into
// what the outbound classifier looks at: the decoded header, the text of every
// text part (HTML rendered to text), the links with their anchor text, and the
// attachments with their declared and sniffed types.
//
// Submissions are outside input, so the parser is lenient and bounded: it
// never fails on a malformed message (it records a Defect and goes on), it
// streams part bodies, and it keeps at most what Limits allow however large
// or deeply nested the message is. MIME structure is read with
// github.com/emersion/go-message's textproto package; transfer encodings and
// charsets are decoded here so that a broken encoding or unknown charset falls
// back to a best-effort reading instead of losing the part.
package mailparse

import (
	"bytes"
	"strings"
)

// Limits bound the work and memory spent on one message. The zero value of a
// field means its default (see DefaultLimits).
type Limits struct {
	// MaxHeaderBytes is how much of the top-level header block is read.
	MaxHeaderBytes int
	// MaxFieldBytes is how much of one header field value is kept.
	MaxFieldBytes int
	// MaxTextBytes is how much decoded text is kept over all text parts
	// (plain and HTML-rendered together).
	MaxTextBytes int
	// MaxParts is how many MIME parts are visited.
	MaxParts int
	// MaxDepth is how deeply nested multiparts and attached messages are
	// followed.
	MaxDepth int
	// MaxLinks is how many links are kept.
	MaxLinks int
	// MaxAttachments is how many attachments are described.
	MaxAttachments int
	// MaxArchiveBytes is the largest decoded zip archive (or OLE document) that
	// is buffered to be listed or scanned for macros.
	MaxArchiveBytes int
	// MaxArchiveEntries is how many entries of a zip archive are listed.
	MaxArchiveEntries int
}

// DefaultLimits returns the limits used when a field of Limits is zero.
func DefaultLimits() Limits {
	return Limits{
		MaxHeaderBytes:    2 << 20,
		MaxFieldBytes:     16 << 10,
		MaxTextBytes:      256 << 10,
		MaxParts:          256,
		MaxDepth:          24,
		MaxLinks:          512,
		MaxAttachments:    64,
		MaxArchiveBytes:   8 << 20,
		MaxArchiveEntries: 256,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	set := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&l.MaxHeaderBytes, d.MaxHeaderBytes)
	set(&l.MaxFieldBytes, d.MaxFieldBytes)
	set(&l.MaxTextBytes, d.MaxTextBytes)
	set(&l.MaxParts, d.MaxParts)
	set(&l.MaxDepth, d.MaxDepth)
	set(&l.MaxLinks, d.MaxLinks)
	set(&l.MaxAttachments, d.MaxAttachments)
	set(&l.MaxArchiveBytes, d.MaxArchiveBytes)
	set(&l.MaxArchiveEntries, d.MaxArchiveEntries)
	return l
}

// Field is one top-level header field, its value unfolded but not decoded.
type Field struct {
	Name  string // canonical form, e.g. "Reply-To"
	Value string
}

// Address is a parsed mailbox.
type Address struct {
	Name   string // display name, decoded
	Addr   string // local@domain as written
	Domain string // lowercased domain part; empty when there is none
}

// Defect names something malformed that the parser worked around.
type Defect string

// Defects the parser records.
const (
	DefectHeaderSyntax    Defect = "header-syntax"    // a header line without a colon
	DefectHeaderTruncated Defect = "header-truncated" // header block beyond MaxHeaderBytes
	DefectBadBase64       Defect = "bad-base64"       // characters outside the alphabet
	DefectBadQP           Defect = "bad-quoted-printable"
	DefectUnknownEncoding Defect = "unknown-transfer-encoding"
	DefectUnknownCharset  Defect = "unknown-charset" // fell back to UTF-8 or Windows-1252
	DefectBadUTF8         Defect = "invalid-utf8"    // text declared UTF-8/ASCII was not
	DefectBadContentType  Defect = "bad-content-type"
	DefectNoBoundary      Defect = "multipart-without-boundary"
	DefectMultipartSyntax Defect = "multipart-syntax" // boundaries missing or broken
	DefectTooDeep         Defect = "too-deep"         // nesting beyond MaxDepth
	DefectTooManyParts    Defect = "too-many-parts"
	DefectTextTruncated   Defect = "text-truncated" // text beyond MaxTextBytes dropped
	DefectNULBytes        Defect = "nul-bytes"
)

// Message is what the parser extracted from one message.
type Message struct {
	// Header holds the top-level header fields in order, values capped at
	// Limits.MaxFieldBytes.
	Header []Field
	// Subject is the decoded Subject (RFC 2047 encoded words resolved).
	Subject string
	From    Address
	ReplyTo Address
	HasFrom bool
	// HasReplyTo is true when a Reply-To field with an address exists.
	HasReplyTo bool
	// To holds the first recipients of To and Cc (at most 64).
	To []Address

	// Text is the decoded text of the text/plain parts.
	Text string
	// HTMLText is the visible text of the text/html parts.
	HTMLText string
	// HiddenText counts the bytes of HTML text styled to be invisible
	// (display:none, zero-size font, white on white); that text is not in
	// HTMLText.
	HiddenText int

	Links       []Link
	Attachments []Attachment

	// Structure counts.
	Parts          int  // MIME leaf parts seen
	TextParts      int  // text/plain parts
	HTMLParts      int  // text/html parts
	Images         int  // image parts and <img> tags
	Forms          int  // HTML <form> elements
	PasswordFields int  // <input type=password>
	Depth          int  // deepest nesting reached
	Alternative    bool // a multipart/alternative was seen

	// TextCharsets lists the charsets declared on text parts, lowercased.
	TextCharsets []string
	// Base64Text is true when a text part was base64 encoded.
	Base64Text bool

	Defects []Defect
}

// Get returns the value of the first header field named name (any case), or
// "" when there is none.
func (m *Message) Get(name string) string {
	for _, f := range m.Header {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// Has reports whether a header field named name (any case) exists.
func (m *Message) Has(name string) bool {
	for _, f := range m.Header {
		if strings.EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

// HasDefect reports whether d was recorded.
func (m *Message) HasDefect(d Defect) bool {
	for _, x := range m.Defects {
		if x == d {
			return true
		}
	}
	return false
}

func (m *Message) defect(d Defect) {
	if !m.HasDefect(d) {
		m.Defects = append(m.Defects, d)
	}
}

// Parse parses a raw message. It never fails: what it cannot read it skips
// and records in Message.Defects. A leading mbox "From " line is skipped.
func Parse(raw []byte, lim Limits) *Message {
	return new(Parser).Parse(raw, lim)
}

// Parser parses messages as Parse does, reusing its buffers from one
// message to the next, which spares the allocation (and collection) of
// every part's text for a caller that is done with a message before it
// parses the next, as the classifier is. The Message a Parser returns, and
// every string in it, is valid only until the Parser's next Parse. The
// zero value is ready to use; a Parser must not be used concurrently.
type Parser struct {
	// arena holds the decoded text of the parts, one after the other.
	arena []byte
	// qpBuf holds a quoted-printable part's encoded bytes while they are
	// decoded.
	qpBuf []byte
	// styleBuf holds the normalised style attribute of the current tag.
	styleBuf []byte
}

// Parse parses a raw message, as the package function Parse does, into
// memory that the next call reuses.
func (ps *Parser) Parse(raw []byte, lim Limits) *Message {
	p := &parser{lim: lim.withDefaults(), m: &Message{}, ps: ps}
	p.textLeft = p.lim.MaxTextBytes
	if bytes.IndexByte(raw, 0) >= 0 {
		p.m.defect(DefectNULBytes)
	}
	raw = skipMboxFrom(raw)
	hdrBlock, body := splitHeader(raw)
	if len(hdrBlock) > p.lim.MaxHeaderBytes {
		hdrBlock = hdrBlock[:p.lim.MaxHeaderBytes]
		p.m.defect(DefectHeaderTruncated)
	}
	p.bodyLen = len(body)
	// The parts' text is at most the body and at most four times the text
	// budget (HTML's allowance), and each read wants a byte to spare; what
	// does not fit goes to arrays of its own.
	need := min(len(body), 4*p.lim.MaxTextBytes) + 512
	if cap(ps.arena) < need {
		ps.arena = make([]byte, 0, need)
	}
	ps.arena = ps.arena[:0]
	h := p.readHeader(hdrBlock)
	p.topHeader(h)
	p.entity(h, bytes.NewReader(body), 0, body)
	return p.m
}

// skipMboxFrom drops the "From sender date" envelope line that mbox files put
// before each message; it is not a header field.
func skipMboxFrom(raw []byte) []byte {
	if !bytes.HasPrefix(raw, []byte("From ")) {
		return raw
	}
	if i := bytes.IndexByte(raw, '\n'); i >= 0 {
		return raw[i+1:]
	}
	return nil
}

// splitHeader splits raw at the first empty line. A message with no empty
// line is all header.
func splitHeader(raw []byte) (hdr, body []byte) {
	if len(raw) > 0 && (raw[0] == '\n' || (raw[0] == '\r' && len(raw) > 1 && raw[1] == '\n')) {
		i := bytes.IndexByte(raw, '\n')
		return nil, raw[i+1:]
	}
	for i := 0; ; {
		j := bytes.IndexByte(raw[i:], '\n')
		if j < 0 {
			return raw, nil
		}
		k := i + j + 1
		if k < len(raw) && raw[k] == '\n' {
			return raw[:k], raw[k+1:]
		}
		if k+1 < len(raw) && raw[k] == '\r' && raw[k+1] == '\n' {
			return raw[:k], raw[k+2:]
		}
		i = k
	}
}
