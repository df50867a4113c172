package classify

import (
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// FNV-1a 64-bit constants. The hash must never change between training and
// scoring, and must not be seeded per process (hash/maphash is), so the
// model can be rebuilt byte-identically.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func hashBytes(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

func hashString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// mix64 is a 64-bit finaliser (from SplitMix64) used to combine two token
// hashes into a bigram hash.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Token families: a prefix hashed before the token, so that the same word in
// the subject and in the body are different features.
const (
	famSubject = "s:"
	famBody    = "b:"
	famBigram  = "2:"
	famCaps    = "C:"
	famHeader  = "h:"
	famURL     = "u:"
	famMeta    = "m:"
)

// maxTokenLen: longer runs (base64 junk, hashes) become one shape token.
const maxTokenLen = 24

// scanWords splits text into word tokens: runs of letters and digits with
// inner apostrophes, dashes, dots and dollar/percent signs kept, lowercased.
// It calls emit with the lowercased token bytes (valid until the next call),
// whether the token was all capitals, and whether it was a compound with a
// dot or @ (a host or address).
func scanWords(text string, buf []byte, emit func(tok []byte, caps, compound bool)) []byte {
	sc := wordScanner{text: text, buf: buf}
	for sc.next() {
		emit(sc.tok, sc.caps, sc.compound)
	}
	return sc.buf
}

// wordScanner is scanWords as an iterator, for the hot loop over message
// text: a loop body keeps its state in registers where a callback's
// captured variables live in memory.
type wordScanner struct {
	text string
	i    int
	buf  []byte
	// The current token, as scanWords passes it to emit: lowercased, in
	// buf or in text itself, never to be written to.
	tok            []byte
	caps, compound bool
}

// next reads the next token; it reports false at the end of the text.
func (sc *wordScanner) next() bool {
	text, i, buf := sc.text, sc.i, sc.buf
	for i < len(text) {
		// Skip separators.
		c := text[i]
		if c < utf8.RuneSelf {
			if !isTokenStart(c) {
				i++
				continue
			}
		} else {
			r, size := utf8.DecodeRuneInString(text[i:])
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
				i += size
				continue
			}
		}
		// Read a token. ASCII first, without copying: most tokens are
		// lowercase ASCII and are handed out as they stand in text.
		upper, lower := 0, 0
		compound := false
		j := i
		for j < len(text) {
			c := text[j]
			switch asciiClass[c] {
			case classLower:
				// Most of a word: take the run of lowercase letters at once.
				k := j + 1
				for k < len(text) && asciiClass[text[k]] == classLower {
					k++
				}
				lower += k - j
				j = k
				continue
			case classUpper:
				upper++
			case classDigit:
			case classConnector:
				if j+1 < len(text) && isWordStart(text[j+1]) {
					if c == '.' || c == '@' {
						compound = true
					}
				} else {
					goto asciiDone
				}
			case classNonASCII:
				goto slow
			default:
				goto asciiDone
			}
			j++
		}
	asciiDone:
		if upper == 0 {
			sc.tok = unsafe.Slice(unsafe.StringData(text[i:]), j-i) // read-only
		} else {
			buf = append(buf[:0], text[i:j]...)
			for k, c := range buf {
				if c >= 'A' && c <= 'Z' {
					buf[k] = c + 32
				}
			}
			sc.tok = buf
		}
		sc.i, sc.buf = j, buf
		sc.caps, sc.compound = upper >= 3 && lower == 0, compound
		return true
	slow:
		// A non-ASCII character: the token is read again, rune by rune.
		buf = buf[:0]
		upper, lower = 0, 0
		compound = false
		j = i
		for j < len(text) {
			c := text[j]
			if c < utf8.RuneSelf {
				switch {
				case c >= 'a' && c <= 'z':
					lower++
					buf = append(buf, c)
				case c >= 'A' && c <= 'Z':
					upper++
					buf = append(buf, c+32)
				case c >= '0' && c <= '9', c == '$', c == '%':
					buf = append(buf, c)
				case c == '\'' || c == '-' || c == '.' || c == '@' || c == '_':
					// Inner connector: kept only when a word character follows.
					if j+1 < len(text) && isWordStart(text[j+1]) {
						if c == '.' || c == '@' {
							compound = true
						}
						buf = append(buf, c)
					} else {
						goto done
					}
				default:
					goto done
				}
				j++
				continue
			}
			r, size := utf8.DecodeRuneInString(text[j:])
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.Is(unicode.Mn, r) {
				break
			}
			if unicode.IsUpper(r) {
				upper++
			} else {
				lower++
			}
			buf = utf8.AppendRune(buf, unicode.ToLower(r))
			j += size
		}
	done:
		if j == i {
			j++
		}
		sc.i, sc.buf = j, buf
		sc.tok, sc.caps, sc.compound = buf, upper >= 3 && lower == 0, compound
		return true
	}
	sc.i, sc.buf = i, buf
	return false
}

// Byte classes of the ASCII token reader.
const (
	classSeparator = iota
	classLower
	classUpper
	classDigit     // and '$', '%'
	classConnector // '\'', '-', '.', '@', '_': kept inside a word
	classNonASCII
)

// asciiClass maps every byte to its class.
var asciiClass = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c >= 'a' && c <= 'z':
			t[c] = classLower
		case c >= 'A' && c <= 'Z':
			t[c] = classUpper
		case c >= '0' && c <= '9', c == '$', c == '%':
			t[c] = classDigit
		case c == '\'', c == '-', c == '.', c == '@', c == '_':
			t[c] = classConnector
		case c >= utf8.RuneSelf:
			t[c] = classNonASCII
		}
	}
	return t
}()

func isTokenStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '$'
}

func isWordStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= utf8.RuneSelf
}
