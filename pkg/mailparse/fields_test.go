package mailparse

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
)

// checkFields compares parseFields with go-message's textproto.ReadHeader,
// which it replaces on well-formed blocks and must match exactly.
func checkFields(t *testing.T, block []byte) {
	t.Helper()
	got, ok := parseFields(block)
	h, err := textproto.ReadHeader(bufio.NewReaderSize(bytes.NewReader(block), 4096))
	if !ok {
		return // read by the lenient path, as before
	}
	if err != nil {
		t.Errorf("parseFields(%.200q) accepted a block ReadHeader rejects: %v", block, err)
		return
	}
	var want fieldList
	fs := h.Fields()
	for fs.Next() {
		want = append(want, Field{Name: fs.Key(), Value: fs.Value()})
	}
	if len(got) != len(want) {
		t.Errorf("parseFields(%.200q): %d fields, ReadHeader %d", block, len(got), len(want))
		return
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("parseFields(%.200q) field %d = %q, ReadHeader %q", block, i, got[i], want[i])
		}
	}
}

func TestParseFields(t *testing.T) {
	tests := []string{
		"",
		"Subject: hi\n",
		"Subject: hi",
		"subject:hi\r\nfrom :  a@b.example \r\n",
		"Subject: one\n two\n\tthree\n",
		"Subject: one\r\n \r\n two\r\n",
		"Subject:\n two\n",
		"Subject: a\r\r\nX: b\r",
		" leading: blank\n",
		"no colon here\nSubject: x\n",
		"Bad Name: x\n",
		": empty name\nSubject: x\n",
		"X-Weird_Name.1: v\n",
		"x-mailer: a\nX-MAILER: b\n",
		"Subject: a\n\nBody: not a field\n",
		"Subject: a\n\r\nX: y\n",
		"Subject: nul\x00byte\n",
		"Subject: 8bit \xe9t\xe9\n",
		"Subject: x\n" + string(bytes.Repeat([]byte("y"), 9000)) + ": long\n",
		"Subject: " + string(bytes.Repeat([]byte("z"), 5000)) + "\r\n continued\r\n",
	}
	for _, tt := range tests {
		checkFields(t, []byte(tt))
	}
}

func TestParseFields_Corpus(t *testing.T) {
	dir := corpusDir(t)
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := splitHeader(skipMboxFrom(raw))
		checkFields(t, block)
	}
}

func FuzzParseFields(f *testing.F) {
	f.Add([]byte("Subject: one\r\n two\r\nFrom: a@b.example\n"))
	f.Add([]byte("x: \r\r\n\t\n y\r"))
	f.Fuzz(func(t *testing.T, block []byte) {
		checkFields(t, block)
	})
}

// TestParse_RedirectAfterLongerLowercase: a letter whose lowercase takes more
// bytes (U+023A) before an embedded URL once made the redirect search index
// past the end of the link and panic.
func TestParse_RedirectAfterLongerLowercase(t *testing.T) {
	msg := "Subject: x\n\nsee http://a.example/" + strings.Repeat("\u023a", 100) + "=http://b.example/ now\n"
	m := Parse([]byte(msg), Limits{})
	var hosts []string
	for _, l := range m.Links {
		hosts = append(hosts, l.Host)
	}
	if want := []string{"a.example", "b.example"}; !slices.Equal(hosts, want) {
		t.Errorf("link hosts = %q, want %q", hosts, want)
	}
}

// TestLowerASCII: the interned names must be what lowercasing gives.
func TestLowerASCII(t *testing.T) {
	for l, names := range htmlNamesByLen {
		for _, n := range names {
			if len(n) != l || asciiLower(n) != n {
				t.Errorf("htmlNamesByLen[%d] holds %q", l, n)
			}
		}
	}
	for _, s := range []string{"A", "HREF", "Font", "bgColor", "X-UNKNOWN", "href", "ÀB", "O:P"} {
		if got, want := lowerASCII(s), asciiLower(s); got != want {
			t.Errorf("lowerASCII(%q) = %q, want %q", s, got, want)
		}
	}
}

// BenchmarkParse_RejectedWWW: 256 KiB of "www." each glued to a word, so
// none starts a link. The URL search once rescanned the rest of the text
// after each of them (quadratic: 60 ms here); it is linear now (2 ms).
func BenchmarkParse_RejectedWWW(b *testing.B) {
	msg := []byte("Subject: x\n\n" + strings.Repeat("xwww.", 256<<10/5))
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		Parse(msg, Limits{})
	}
}

func FuzzIndexFoldASCII(f *testing.F) {
	f.Add("a.example/x?u=HTTP%3A%2F%2Fb.example", "http%3a%2f%2f")
	f.Add("\x48TTP://\xc8x", "http://")
	f.Fuzz(func(t *testing.T, s, needle string) {
		needle = asciiLower(needle)
		if got, want := IndexFoldASCII(s, needle), strings.Index(asciiLower(s), needle); got != want {
			t.Errorf("IndexFoldASCII(%q, %q) = %d, want %d", s, needle, got, want)
		}
	})
}

// TestParser_Reuse: a Parser reused from message to message gives each one
// what a fresh Parse gives.
func TestParser_Reuse(t *testing.T) {
	dir := corpusDir(t)
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
	var ps Parser
	for i, f := range files {
		if i%2 == 1 {
			continue // every other message: enough shapes, half the time
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, want := ps.Parse(raw, Limits{}), Parse(raw, Limits{})
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: reused Parser gave\n%+v\nwant\n%+v", f, got, want)
		}
	}
}
