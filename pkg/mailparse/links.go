package mailparse

import (
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// LinkSource says where a link was found.
type LinkSource uint8

// Where links come from.
const (
	LinkText     LinkSource = iota // a URL written in text
	LinkHref                       // <a href> or <area href>
	LinkImage                      // <img src> and other embedded resources
	LinkForm                       // <form action>
	LinkRedirect                   // the target carried inside a redirector URL
)

// Link is a URL found in the message.
type Link struct {
	URL    string // normalised: scheme and host lowercased, hxxp and [.] undone
	Host   string // lowercased host without port or user info; IPv4 hosts dotted
	Text   string // anchor text of an HTML link
	Source LinkSource
	// Obfuscated: written to defeat matching (hxxp, [.], percent-encoded
	// host, integer or hex IP).
	Obfuscated bool
	IP         bool // host is an IP address
	// UserInfo: a user@ part before the host, the "http://bank.com@evil/"
	// trick.
	UserInfo bool
	// Redirector: the URL carries another URL (?url=http://...), which is
	// added as its own LinkRedirect link.
	Redirector bool
}

// addLink normalises raw and records it, with any URL it redirects to.
func (p *parser) addLink(raw string, src LinkSource, text string) int {
	if len(p.m.Links) >= p.lim.MaxLinks {
		return -1
	}
	l, ok := ParseLink(raw)
	if !ok {
		return -1
	}
	l.Source = src
	l.Text = capString(strings.Join(strings.Fields(text), " "), 256)
	target := redirectTarget(l.URL)
	if target != "" {
		if t, ok := ParseLink(target); ok && t.Host != l.Host {
			l.Redirector = true
			t.Source = LinkRedirect
			defer func() {
				if len(p.m.Links) < p.lim.MaxLinks {
					p.m.Links = append(p.m.Links, t)
				}
			}()
		}
	}
	p.m.Links = append(p.m.Links, l)
	return len(p.m.Links) - 1
}

// ParseLink normalises a URL as written in mail. It accepts http, https and
// their obfuscated hxxp forms and bare "www." hosts; anything else (mailto:,
// javascript:, relative paths) is not a link.
func ParseLink(raw string) (Link, bool) {
	s := strings.Trim(strings.TrimSpace(raw), `"'<>`)
	if len(s) > 2048 {
		s = s[:2048]
	}
	var l Link
	switch {
	case hasPrefixFold(s, "http://"), hasPrefixFold(s, "https://"):
	case hasPrefixFold(s, "hxxp://"), hasPrefixFold(s, "hxxps://"),
		hasPrefixFold(s, "hxxp[:]//"), hasPrefixFold(s, "hxxps[:]//"):
		l.Obfuscated = true
		s = "http" + strings.Replace(s[4:], "[:]", ":", 1)
	case hasPrefixFold(s, "www."):
		s = "http://" + s
	default:
		return l, false
	}
	i := strings.Index(s, "://")
	scheme := strings.ToLower(s[:i])
	rest := s[i+3:]
	for strings.HasPrefix(rest, "/") {
		rest = rest[1:]
	}
	hostEnd := strings.IndexAny(rest, "/?#\\")
	if hostEnd < 0 {
		hostEnd = len(rest)
	}
	host, tail := rest[:hostEnd], rest[hostEnd:]
	if at := strings.LastIndexByte(host, '@'); at >= 0 {
		l.UserInfo = true
		host = host[at+1:]
	}
	if strings.Contains(host, "[.]") || strings.Contains(host, "(.)") {
		l.Obfuscated = true
		host = strings.NewReplacer("[.]", ".", "(.)", ".").Replace(host)
	}
	if strings.Contains(host, "%") {
		if h, err := url.PathUnescape(host); err == nil {
			l.Obfuscated = true
			host = h
		}
	}
	if h, _, ok := strings.Cut(host, ":"); ok && !strings.HasPrefix(host, "[") {
		host = h
	}
	host = strings.TrimRight(strings.ToLower(host), ".")
	if host == "" {
		return l, false
	}
	if ip, obf, ok := parseIPv4(host); ok {
		l.IP, host = true, ip
		l.Obfuscated = l.Obfuscated || obf
	} else if strings.HasPrefix(host, "[") {
		if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
			l.IP, host = true, a.String()
		} else {
			return l, false
		}
	} else if !validHostname(host) {
		return l, false
	}
	l.Host = host
	if after := s[i+3:]; s[:i] == scheme && len(after) == len(host)+len(tail) &&
		after[:len(host)] == host && after[len(host):] == tail {
		l.URL = s // already normal, as most links are
	} else {
		l.URL = scheme + "://" + host + tail
	}
	return l, true
}

// hasPrefixFold is strings.HasPrefix(strings.ToLower(s), lowerPrefix) for
// an ASCII prefix, without lowercasing s.
func hasPrefixFold(s, lowerPrefix string) bool {
	return len(s) >= len(lowerPrefix) && IndexFoldASCII(s[:len(lowerPrefix)], lowerPrefix) == 0
}

// IndexFoldASCII is strings.Index(asciiLower(s), lowerNeedle) without
// lowercasing s: ASCII capitals match their lowercase letter. For ASCII s
// it is strings.Index(strings.ToLower(s), lowerNeedle).
func IndexFoldASCII(s, lowerNeedle string) int {
	n := len(lowerNeedle)
	if n == 0 {
		return 0
	}
	first := lowerNeedle[0]
	letter := first >= 'a' && first <= 'z'
outer:
	for i := 0; i+n <= len(s); i++ {
		if letter && s[i]|0x20 != first {
			continue // only the letter in either case passes this
		}
		for j := 0; j < n; j++ {
			c := s[i+j]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != lowerNeedle[j] {
				continue outer
			}
		}
		return i
	}
	return -1
}

// validHostname accepts dotted names of letters, digits, hyphens and
// non-ASCII (IDN) characters.
func validHostname(h string) bool {
	if !strings.Contains(h, ".") || len(h) > 253 {
		return false
	}
	for _, c := range h {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.', c == '_', c > 127:
		default:
			return false
		}
	}
	return true
}

// parseIPv4 reads the IPv4 forms browsers accept: dotted decimal, a single
// decimal or hex integer, and dotted parts in octal or hex. obfuscated is
// true for every form but plain dotted decimal.
func parseIPv4(h string) (ip string, obfuscated, ok bool) {
	// Every form is made of digits, dots, hex digits and the base prefixes
	// and separators strconv reads ("0x", "0o", "_"); anything else is a
	// name, rejected here without the two failed parses' errors.
	for i := 0; i < len(h); i++ {
		switch c := h[i]; {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F', c == '.', c == 'x', c == 'X',
			c == 'o', c == 'O', c == '_':
		default:
			return "", false, false
		}
	}
	if a, err := netip.ParseAddr(h); err == nil && a.Is4() {
		return a.String(), false, true
	}
	parts := strings.Split(h, ".")
	if len(parts) > 4 {
		return "", false, false
	}
	var vals []uint64
	for _, part := range parts {
		if part == "" {
			return "", false, false
		}
		v, err := strconv.ParseUint(part, 0, 32) // base 0: 0x hex, leading-0 octal
		if err != nil {
			return "", false, false
		}
		vals = append(vals, v)
	}
	var n uint64
	switch len(vals) {
	case 1:
		n = vals[0]
	case 4:
		for _, v := range vals {
			if v > 255 {
				return "", false, false
			}
			n = n<<8 | v
		}
	default:
		return "", false, false
	}
	if n > 0xffffffff || n < 1<<24 {
		return "", false, false
	}
	a := netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	return a.String(), true, true
}

// redirectTarget returns a URL embedded in u's path or query (as redirectors
// and click trackers carry it), or "".
func redirectTarget(u string) string {
	i := strings.Index(u, "://")
	rest := u[i+3:]
	for _, marker := range []string{"http://", "https://", "http%3a%2f%2f", "https%3a%2f%2f", "www."} {
		// Searched case-insensitively in place: offsets found in
		// strings.ToLower(rest) were off (and out of range, a panic) after
		// a letter whose lowercase is longer, such as U+023A.
		j := IndexFoldASCII(rest, marker)
		if j <= 0 {
			continue
		}
		// The embedded URL must start after a separator, not inside the host.
		if c := rest[j-1]; c != '=' && c != '/' && c != '*' && c != '?' && c != '&' {
			continue
		}
		t := rest[j:]
		if strings.Contains(marker, "%") {
			if d, err := url.QueryUnescape(t); err == nil {
				t = d
			}
		}
		if k := strings.IndexByte(t, '&'); k >= 0 {
			t = t[:k]
		}
		return t
	}
	return ""
}

// scanText records the URLs written in text: anything starting with a
// scheme and "://" (http, https, hxxp...) or with "www.", in one pass.
func (p *parser) scanText(text string) {
	sc := urlScanner{text: text, colon: -2, www: -2, wwwUpper: -2}
	for i := 0; i < len(text) && len(p.m.Links) < p.lim.MaxLinks; {
		start := sc.next(i)
		if start < 0 {
			return
		}
		end := start
		for end < len(text) && !urlStop(text[end]) {
			end++
		}
		raw := strings.TrimRight(text[start:end], ".,;:!?)]}'\"")
		p.addLink(raw, LinkText, "")
		i = max(end, start+1)
	}
}

// urlScanner finds URL starts without copying or lowercasing the text: it
// keeps the next colon and the next "www." ahead of the position, and looks
// back from a colon for a scheme.
type urlScanner struct {
	text string
	// Next positions found (-1 none left, -2 not searched) of ':', "www."
	// and "WWW.". The two spellings are kept apart so that each search
	// only ever moves forward: searching for both at once from every
	// rejected "www." (as in "xwww.xwww....") rescanned the rest of the
	// text for the spelling that was not there, quadratic in the text.
	colon, www, wwwUpper int
}

func (u *urlScanner) find(cur *int, i int, f func(string) int) int {
	if *cur == -1 || *cur >= i {
		return *cur
	}
	j := f(u.text[i:])
	if j < 0 {
		*cur = -1
	} else {
		*cur = i + j
	}
	return *cur
}

func indexWWW(s string) int { return strings.Index(s, "www.") }

func indexWWWUpper(s string) int { return strings.Index(s, "WWW.") }

func indexColon(s string) int { return strings.IndexByte(s, ':') }

// next returns the start of the first URL at or after i, or -1.
func (u *urlScanner) next(i int) int {
	s := u.text
	for i < len(s) {
		c := u.find(&u.colon, i, indexColon)
		w := u.find(&u.www, i, indexWWW)
		if W := u.find(&u.wwwUpper, i, indexWWWUpper); w < 0 || (W >= 0 && W < w) {
			w = W
		}
		if c < 0 && w < 0 {
			return -1
		}
		if w >= 0 && (c < 0 || w < c) {
			if w == 0 || !isWordByte(s[w-1]) && s[w-1] != '/' && s[w-1] != '.' {
				return w
			}
			i = w + 1
			continue
		}
		// A colon: does a scheme end here ("http://", or "hxxp[:]//")?
		end := -1
		switch {
		case strings.HasPrefix(s[c:], "://"):
			end = c
		case c > 0 && strings.HasPrefix(s[c-1:], "[:]//"):
			end = c - 1
		}
		if end >= 0 {
			for _, scheme := range []string{"https", "http", "hxxps", "hxxp"} {
				st := end - len(scheme)
				if st >= 0 && strings.EqualFold(s[st:end], scheme) && (st == 0 || !isWordByte(s[st-1])) {
					return st
				}
			}
		}
		i = c + 1
	}
	return -1
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func urlStop(c byte) bool {
	return c <= ' ' || c == '"' || c == '<' || c == '>' || c == '\'' || c == '`' || c == 0x7f
}

// asciiLower lowercases ASCII letters only, so byte offsets are unchanged.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}
