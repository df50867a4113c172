package classify

import (
	"bufio"
	"bytes"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// TestValidDate checks the fast Date check against mail.ParseDate, which it
// must agree with exactly (the BAD_DATE rule's weight was learned with it).
func TestValidDate(t *testing.T) {
	dates := []string{
		"Mon, 2 Sep 2002 10:00:00 -0700",
		"2 Sep 2002 10:00:00 +0100",
		"Mon, 02 Sep 2002 10:00:00 -0700 (PDT)",
		"  Tue, 31 Sep 2002 10:00:00 -0700",
		"Thu, 29 Feb 2001 10:00:00 +0000",
		"Thu, 29 Feb 2004 10:00:00 +0000",
		"Mon, 2 Sep 02 10:00 -0700",
		"Mon, 2 Sep 2002 24:00:00 -0700",
		"Mon, 2 Sep 2002 10:00:00 -07",
		"Mon, 2 Sep 2002 10:00:00 GMT",
		"Mon, 2 Sep 2002 10:00:00 EDT (EDT)",
		"Mon, 2 Sep 2002 10:00:00 -0700 garbage",
		"Mon, 2 Sep 2002 10:00:00 -0700 (unclosed",
		"Mon, 2 Sep 2002 10:00:00\r\n -0700",
		"Mon, 2 Sep 2002 10:00:00 \r-0700",
		"Xyz, 2 Sep 2002 10:00:00 -0700",
		"Mon,2 Sep 2002 10:00:00 -0700",
		"2002-09-02T10:00:00-07:00",
		"Mon, 2 Sept 2002 10:00:00 -0700",
		"-0700",
		"today",
		"Mon, 2 Sep 2002 10:00:00 +9999",
		"Mon, 2 Sep 2002 10:00:00 -0700 (PDT) (nested (ok) \\) ok)",
		"Mon, 2 Sep 2002 10:00:00 -0700 (\\",
		"Mon, 2 Sep 2002 10:00:00 -0700 ((a)",
		"Mon, 2 Sep 2002 10:00:00 -0700 (a) junk (unclosed",
		"Mon, 2 Sep 2002 10:00:00 -0700 junk (unclosed",
		"Mon, 2 Sep 2002 10:00:00 -0700\t(tab)",
	}
	dates = append(dates, corpusDates(t)...)
	for _, d := range dates {
		_, err := mail.ParseDate(d)
		if got, want := validDate(d), err == nil; got != want {
			t.Errorf("validDate(%q) = %v, mail.ParseDate says %v", d, got, want)
		}
	}
}

// corpusDates returns the Date values of the corpus messages, as the
// classifier reads them.
func corpusDates(t *testing.T) []string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "..", "shared", "corpus", "spamassassin"))
	if err != nil {
		return nil
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
	var out []string
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(raw))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if line == "" {
				break
			}
			if len(line) > 5 && strings.EqualFold(line[:5], "date:") {
				out = append(out, strings.TrimSpace(line[5:]))
				break
			}
		}
	}
	return out
}

// phishPhraseSimple is the plain form of extractor.phishPhrase: lowercase,
// then search for every phrase. The fast form must agree with it.
func phishPhraseSimple(s string) bool {
	if len(s) > 8<<10 {
		s = s[:8<<10]
	}
	ls := strings.ToLower(s)
	if !strings.Contains(ls, "your") && !strings.Contains(ls, "activity") && !strings.Contains(ls, "access") {
		return false
	}
	for _, pv := range phishPivots {
		for _, p := range pv.phrases {
			if strings.Contains(ls, p) {
				return true
			}
		}
	}
	return false
}

func TestPhishPhrase(t *testing.T) {
	tests := []string{
		"",
		"Please VERIFY YOUR ACCOUNT now",
		"Your account has been suspended",
		"account has been suspended", // no gate word
		"account has been suspended, see the access log", // gate word elsewhere
		"we saw Suspicious Activity",
		"unauthorized access detected",
		"your your your verify your email",
		"re-enter your details",
		"VERİFY YOUR ACCOUNT", // Turkish dotted I lowercases to i
		"ſign in to your account",
		strings.Repeat("x", 8<<10-5) + "verify your account", // cut at 8 KiB
		"nothing to see here",
	}
	x := newExtractor(1<<10 - 1)
	for _, s := range tests {
		if got, want := x.phishPhrase(s), phishPhraseSimple(s); got != want {
			t.Errorf("phishPhrase(%.40q) = %v, want %v", s, got, want)
		}
	}
}

func FuzzPhishPhrase(f *testing.F) {
	f.Add("Your account has been suspended")
	f.Add("verify your identity")
	x := newExtractor(1<<10 - 1)
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := x.phishPhrase(s), phishPhraseSimple(s); got != want {
			t.Errorf("phishPhrase(%q) = %v, want %v", s, got, want)
		}
	})
}

// shoutingSimple is shouting rune by rune, the form the fast one must match.
func shoutingSimple(s string, minLetters int, ratio float64) bool {
	upper, letters := 0, 0
	for _, r := range s {
		if unicode.IsLetter(r) {
			letters++
			if unicode.IsUpper(r) {
				upper++
			}
		}
	}
	return letters >= minLetters && float64(upper) >= ratio*float64(letters)
}

func FuzzShouting(f *testing.F) {
	f.Add("FREE MONEY NOW!!! click @[`{ here", 8, 0.6)
	f.Add("Ünïcödé ÀÉÎ and ascii ABCDEFGHIJ", 3, 0.3)
	f.Fuzz(func(t *testing.T, s string, minLetters int, ratio float64) {
		if got, want := shouting(s, minLetters, ratio), shoutingSimple(s, minLetters, ratio); got != want {
			t.Errorf("shouting(%q, %d, %v) = %v, want %v", s, minLetters, ratio, got, want)
		}
	})
}

func TestShouting(t *testing.T) {
	for _, s := range []string{"", "ABCDEFGH", "abcdefgh", "@[`{@[`{AZaz", "HELLO WORLD, THIS IS LOUD", "Mixed Case Text Here ok", "ÀÉÎ ABCDEFGHIJKLMNOP"} {
		for _, ratio := range []float64{0, 0.3, 0.6, 1} {
			if got, want := shouting(s, 3, ratio), shoutingSimple(s, 3, ratio); got != want {
				t.Errorf("shouting(%q, 3, %v) = %v, want %v", s, ratio, got, want)
			}
		}
	}
}

func FuzzValidDate(f *testing.F) {
	f.Add("Mon, 2 Sep 2002 10:00:00 -0700 (PDT)")
	f.Add("2 Sep 02 10:00 +0100 ((x)")
	f.Fuzz(func(t *testing.T, d string) {
		_, err := mail.ParseDate(d)
		if got, want := validDate(d), err == nil; got != want {
			t.Errorf("validDate(%q) = %v, mail.ParseDate says %v", d, got, want)
		}
	})
}

// scanWordsSimple is the tokenizer as first written, rune by rune into a
// buffer; wordScanner must give the same tokens.
func scanWordsSimple(text string, buf []byte, emit func(tok []byte, caps, compound bool)) []byte {
	i := 0
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
		// Read a token.
		buf = buf[:0]
		upper, lower := 0, 0
		compound := false
		j := i
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
		i = j
		emit(buf, upper >= 3 && lower == 0, compound)
	}
	return buf
}

type token struct {
	tok            string
	caps, compound bool
}

func FuzzScanWords(f *testing.F) {
	f.Add("Hello WORLD, it's a-b c.d e@f.example $5 50% x_y \u00c9COLE Straße ſ İ 'quoted' end.")
	f.Add("FREE!!! mOnEy--now... a\u0301b 1.2.3 foo@ @bar")
	f.Fuzz(func(t *testing.T, text string) {
		var want, got []token
		scanWordsSimple(text, nil, func(tok []byte, caps, compound bool) {
			want = append(want, token{string(tok), caps, compound})
		})
		scanWords(text, nil, func(tok []byte, caps, compound bool) {
			got = append(got, token{string(tok), caps, compound})
		})
		if !slices.Equal(got, want) {
			t.Errorf("scanWords(%q) = %v, want %v", text, got, want)
		}
	})
}
