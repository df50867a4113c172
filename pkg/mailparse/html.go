package mailparse

import (
	"html"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// htmlMaxStack bounds the element stack kept while rendering HTML; deeper
// nesting is read but not tracked.
const htmlMaxStack = 256

type htmlFrame struct {
	tag    string
	hidden bool // content invisible
	bg     bool // sets a background colour other than white
}

// html renders an HTML part to visible text, records links, images, forms
// and the amount of hidden text.
func (p *parser) html(src string) {
	m := p.m
	z := newHTMLTokenizer(src)
	var (
		sb       strings.Builder
		stack    []htmlFrame
		hidden   int // frames on the stack that hide their content
		bgSet    int // frames on the stack that set a background
		anchor   = -1
		anchorSB strings.Builder
	)
	sb.Grow(len(src) / 3)
	closeAnchor := func() {
		if anchor >= 0 && anchor < len(m.Links) {
			m.Links[anchor].Text = capString(strings.Join(strings.Fields(anchorSB.String()), " "), 256)
		}
		anchor = -1
		anchorSB.Reset()
	}
	for {
		tt := z.next()
		switch tt {
		case htmlEOF:
			closeAnchor()
			text := sb.String()
			p.addText(&m.HTMLText, text)
			p.scanText(text)
			return
		case htmlText:
			t := z.text
			if strings.IndexByte(t, '&') >= 0 {
				t = html.UnescapeString(t)
			}
			if hidden > 0 {
				m.HiddenText += len(strings.TrimSpace(t))
				continue
			}
			if sb.Len() < p.textLeft+1 {
				sb.WriteString(t)
			}
			if anchor >= 0 && anchorSB.Len() < 512 {
				anchorSB.WriteString(t)
			}
		case htmlStartTag, htmlSelfClosing:
			tag := z.name
			var href, srcAttr, style, color, bgcolor, typ, action, background string
			z.attr(func(k, v string) {
				switch k {
				case "href":
					href = v
				case "src":
					srcAttr = v
				case "style":
					style = v
				case "color":
					color = v
				case "bgcolor":
					bgcolor = v
				case "type":
					typ = v
				case "action":
					action = v
				case "background":
					background = v
				}
			})
			switch tag {
			case "script", "style":
				continue
			case "a", "area":
				if href != "" {
					closeAnchor()
					if i := p.addLink(unescapeAttr(href), LinkHref, ""); i >= 0 && tag == "a" {
						anchor = i
					}
				}
			case "img":
				m.Images++
				p.addLink(unescapeAttr(srcAttr), LinkImage, "")
			case "iframe", "embed", "frame":
				p.addLink(unescapeAttr(srcAttr), LinkImage, "")
			case "form":
				m.Forms++
				p.addLink(unescapeAttr(action), LinkForm, "")
			case "input":
				if strings.EqualFold(typ, "password") {
					m.PasswordFields++
				}
			case "br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "hr", "blockquote", "title":
				sb.WriteByte('\n')
			case "td", "th":
				sb.WriteByte(' ')
			}
			if background != "" {
				p.addLink(unescapeAttr(background), LinkImage, "")
			}
			if tt == htmlSelfClosing || voidElement(tag) || len(stack) >= htmlMaxStack {
				continue
			}
			f := htmlFrame{tag: tag}
			var st string
			st, p.ps.styleBuf = normalizeStyle(p.ps.styleBuf, style)
			f.bg = (bgcolor != "" && !isWhite(bgcolor)) || styleHasDarkBackground(st)
			f.hidden = hiddenStyle(st)
			if !f.hidden && bgSet == 0 && !f.bg {
				c := color
				if v, ok := styleValue(st, "color:"); ok {
					c = v
				}
				f.hidden = c != "" && isWhite(c)
			}
			if f.hidden {
				hidden++
			}
			if f.bg {
				bgSet++
			}
			stack = append(stack, f)
		case htmlEndTag:
			tag := z.name
			switch tag {
			case "a":
				closeAnchor()
			case "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote", "title":
				sb.WriteByte('\n')
			}
			for i := len(stack) - 1; i >= 0; i-- {
				if stack[i].tag != tag {
					continue
				}
				for _, f := range stack[i:] {
					if f.hidden {
						hidden--
					}
					if f.bg {
						bgSet--
					}
				}
				stack = stack[:i]
				break
			}
		}
	}
}

// unescapeAttr resolves character references in an attribute value.
func unescapeAttr(v string) string {
	if strings.IndexByte(v, '&') >= 0 {
		return html.UnescapeString(v)
	}
	return v
}

func voidElement(tag string) bool {
	switch tag {
	case "br", "img", "hr", "meta", "input", "link", "area", "base", "col", "embed", "param", "source", "wbr", "track":
		return true
	}
	return false
}

// normalizeStyle lowercases a style attribute and removes blanks, in buf,
// which it returns for reuse: the result is only looked at before the next
// call.
func normalizeStyle(buf []byte, s string) (string, []byte) {
	if s == "" {
		return "", buf
	}
	if !IsASCII(s) {
		return strings.Map(func(r rune) rune {
			switch r {
			case ' ', '\t', '\n', '\r':
				return -1
			}
			if r >= 'A' && r <= 'Z' {
				return r + 32
			}
			return r
		}, s), buf
	}
	buf = buf[:0]
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case isHTMLSpace(c):
		case c >= 'A' && c <= 'Z':
			buf = append(buf, c+32)
		default:
			buf = append(buf, c)
		}
	}
	return unsafe.String(unsafe.SliceData(buf), len(buf)), buf
}

// IsASCII reports whether s has no byte outside 7-bit ASCII.
func IsASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// styleValue returns the value of a declaration in a normalised style,
// matching prop only at a declaration start.
func styleValue(st, prop string) (string, bool) {
	for off := 0; ; {
		i := strings.Index(st[off:], prop)
		if i < 0 {
			return "", false
		}
		i += off
		if i == 0 || st[i-1] == ';' || st[i-1] == '"' {
			v := st[i+len(prop):]
			if j := strings.IndexByte(v, ';'); j >= 0 {
				v = v[:j]
			}
			return strings.TrimSuffix(v, "!important"), true
		}
		off = i + 1
	}
}

func hiddenStyle(st string) bool {
	if st == "" {
		return false
	}
	if v, ok := styleValue(st, "display:"); ok && v == "none" {
		return true
	}
	if v, ok := styleValue(st, "visibility:"); ok && v == "hidden" {
		return true
	}
	if v, ok := styleValue(st, "font-size:"); ok {
		switch v {
		case "0", "0px", "1px", "2px", "0pt", "1pt", "0em", "0%", "0.1em", "0.1px":
			return true
		}
	}
	if v, ok := styleValue(st, "opacity:"); ok && (v == "0" || v == "0.0") {
		return true
	}
	return false
}

func styleHasDarkBackground(st string) bool {
	for _, prop := range []string{"background-color:", "background:"} {
		if v, ok := styleValue(st, prop); ok && v != "" && !isWhite(v) && v != "transparent" && v != "none" {
			return true
		}
	}
	return false
}

func isWhite(c string) bool {
	switch strings.ToLower(strings.TrimSpace(c)) {
	case "white", "#fff", "#ffffff", "fff", "ffffff", "#fffffe", "rgb(255,255,255)":
		return true
	}
	return false
}
