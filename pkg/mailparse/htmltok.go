package mailparse

import (
	"strings"
)

// htmlTokenKind is what an htmlTokenizer step found.
type htmlTokenKind uint8

const (
	htmlEOF htmlTokenKind = iota
	htmlText
	htmlStartTag
	htmlEndTag
	htmlSelfClosing
)

// htmlTokenizer splits HTML into text and tags for rendering mail to text.
// It is deliberately small: no tree, no DOCTYPE or CDATA semantics; comments
// and processing instructions are skipped, script and style contents are
// returned as nothing, and a '<' that does not start a tag is text. It works
// on substrings of the input, so it does not copy. Entities are left to the
// caller (see html.UnescapeString).
type htmlTokenizer struct {
	s   string
	pos int
	// The current tag.
	name  string // lowercased
	attrs string // the raw attribute text of the current tag
	text  string // the current text
	raw   string // set while inside script/style: the end tag to look for
}

func newHTMLTokenizer(s string) *htmlTokenizer { return &htmlTokenizer{s: s} }

// next advances to the next token.
func (z *htmlTokenizer) next() htmlTokenKind {
	for z.pos < len(z.s) {
		if z.raw != "" {
			// Skip to </script or </style, case-insensitively.
			end := indexFold(z.s[z.pos:], "</"+z.raw)
			if end < 0 {
				z.pos = len(z.s)
				return htmlEOF
			}
			z.pos += end
			z.raw = ""
			continue
		}
		rest := z.s[z.pos:]
		if rest[0] != '<' {
			i := strings.IndexByte(rest, '<')
			if i < 0 {
				i = len(rest)
			}
			z.text = rest[:i]
			z.pos += i
			return htmlText
		}
		// rest starts with '<'.
		switch {
		case strings.HasPrefix(rest, "<!--"):
			end := strings.Index(rest[4:], "-->")
			if end < 0 {
				z.pos = len(z.s)
				return htmlEOF
			}
			z.pos += 4 + end + 3
			continue
		case len(rest) > 1 && (rest[1] == '!' || rest[1] == '?'):
			end := strings.IndexByte(rest, '>')
			if end < 0 {
				z.pos = len(z.s)
				return htmlEOF
			}
			z.pos += end + 1
			continue
		}
		kind := htmlStartTag
		i := 1
		if len(rest) > 1 && rest[1] == '/' {
			kind = htmlEndTag
			i = 2
		}
		j := i
		for j < len(rest) && isTagNameByte(rest[j]) {
			j++
		}
		if j == i || !isASCIILetter(rest[i]) {
			// Not a tag: a literal '<'.
			z.text = rest[:1]
			z.pos++
			return htmlText
		}
		name := rest[i:j]
		// Find the end of the tag, honouring quoted attribute values.
		k := j
		var quote, prev byte
		for k < len(rest) {
			c := rest[k]
			switch {
			case quote != 0:
				if c == quote {
					quote = 0
				}
			case c == '"' || c == '\'':
				// Only a quote right after '=' opens a value.
				if prev == '=' {
					quote = c
				}
			}
			if quote == 0 && c == '>' {
				break
			}
			if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
				prev = c
			}
			k++
		}
		if k >= len(rest) {
			// Unterminated tag: the rest is not text a reader sees.
			z.pos = len(z.s)
			return htmlEOF
		}
		z.attrs = rest[j:k]
		if kind == htmlStartTag && strings.HasSuffix(trimSpaceRight(z.attrs), "/") {
			kind = htmlSelfClosing
			z.attrs = strings.TrimSuffix(trimSpaceRight(z.attrs), "/")
		}
		z.name = lowerASCII(name)
		z.pos += k + 1
		if kind == htmlStartTag && (z.name == "script" || z.name == "style") {
			z.raw = z.name
		}
		return kind
	}
	return htmlEOF
}

// attr calls fn for each attribute of the current tag, with a lowercased
// name and the raw (still entity-encoded) value.
func (z *htmlTokenizer) attr(fn func(name, value string)) {
	a := z.attrs
	for {
		for a != "" && (isHTMLSpace(a[0]) || a[0] == '/') {
			a = a[1:]
		}
		if a == "" {
			return
		}
		i := 0
		for i < len(a) && a[i] != '=' && a[i] != ' ' && a[i] != '\t' && a[i] != '\r' && a[i] != '\n' && a[i] != '/' {
			i++
		}
		name := a[:i]
		a = trimSpaceLeft(a[i:])
		value := ""
		if strings.HasPrefix(a, "=") {
			a = trimSpaceLeft(a[1:])
			if a != "" && (a[0] == '"' || a[0] == '\'') {
				end := strings.IndexByte(a[1:], a[0])
				if end < 0 {
					value, a = a[1:], ""
				} else {
					value, a = a[1:1+end], a[2+end:]
				}
			} else {
				j := strings.IndexAny(a, " \t\r\n")
				if j < 0 {
					j = len(a)
				}
				value, a = a[:j], a[j:]
			}
		}
		if name != "" {
			fn(lowerASCII(name), value)
		}
		if i == 0 && value == "" && !strings.HasPrefix(a, "=") {
			// No progress possible on a stray character.
			if a != "" {
				a = a[1:]
			}
		}
	}
}

// The blanks of tag syntax, trimmed without strings.Trim's per-call cutset
// set-up, which showed in profiles.
func isHTMLSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func trimSpaceLeft(s string) string {
	for s != "" && isHTMLSpace(s[0]) {
		s = s[1:]
	}
	return s
}

func trimSpaceRight(s string) string {
	for s != "" && isHTMLSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func isASCIILetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isTagNameByte(c byte) bool {
	return isASCIILetter(c) || c >= '0' && c <= '9' || c == '-' || c == ':'
}

// lowerASCII lowercases s, allocating only when s has capitals and is not
// one of the common tag and attribute names (mail HTML is often written in
// capitals: <FONT FACE=...>).
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			if len(s) < len(htmlNamesByLen) {
				for _, n := range htmlNamesByLen[len(s)] {
					if IndexFoldASCII(s, n) == 0 {
						return n
					}
				}
			}
			return asciiLower(s)
		}
	}
	return s
}

// htmlNamesByLen lists common tag and attribute names by length.
var htmlNamesByLen = [...][]string{
	1:  {"a", "b", "i", "p", "u"},
	2:  {"br", "td", "tr", "th", "hr", "li", "ul", "ol", "h1", "h2", "h3", "h4", "em", "id", "dd", "dt", "dl"},
	3:  {"img", "div", "src", "alt", "map", "dir", "col", "pre", "sup", "sub", "big", "rel", "o:p"},
	4:  {"font", "span", "body", "html", "head", "meta", "form", "href", "size", "face", "area", "type", "name", "text", "lang", "link", "base", "code", "nobr"},
	5:  {"table", "tbody", "title", "style", "input", "color", "width", "align", "class", "value", "frame", "embed", "param", "small", "label", "vlink", "alink"},
	6:  {"center", "script", "height", "border", "valign", "action", "target", "strong", "nowrap", "method", "iframe", "option", "select", "button"},
	7:  {"bgcolor", "content", "colspan", "rowspan", "charset", "onclick"},
	8:  {"textarea"},
	9:  {"topmargin"},
	10: {"background", "http-equiv", "blockquote", "leftmargin"},
	11: {"cellpadding", "cellspacing", "marginwidth"},
	12: {"marginheight"},
}

// indexFold is strings.Index for an ASCII lowercase needle, ignoring case.
func indexFold(s, lowerNeedle string) int {
	n := len(lowerNeedle)
	for i := 0; i+n <= len(s); i++ {
		j := strings.IndexByte(s[i:], '<')
		if j < 0 {
			return -1
		}
		i += j
		if i+n <= len(s) && strings.EqualFold(s[i:i+n], lowerNeedle) {
			return i
		}
	}
	return -1
}
