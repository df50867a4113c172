package mailparse

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// corpusDir locates the shared SpamAssassin corpus relative to this package.
func corpusDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join("..", "..", "..", "shared", "corpus", "spamassassin")
	if _, err := os.Stat(filepath.Join(dir, "labels.tsv")); err != nil {
		t.Skipf("corpus not present: %v", err)
	}
	return dir
}

func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

func TestParse_Shapes(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString([]byte("Hello from base64, caf\xc3\xa9"))
	tests := []struct {
		name      string
		give      string
		wantText  string // substring of Text
		wantHTML  string // substring of HTMLText
		wantParts int
		check     func(t *testing.T, m *Message)
	}{
		{
			name:      "plain",
			give:      "From: A <a@example.com>\nSubject: hi\n\nbody text\n",
			wantText:  "body text",
			wantParts: 1,
		},
		{
			name:     "mbox From line skipped",
			give:     "From a@example.com  Thu Aug 22 13:27:39 2002\nSubject: x\n\nhello\n",
			wantText: "hello",
			check: func(t *testing.T, m *Message) {
				if len(m.Header) != 1 || m.Subject != "x" || m.HasDefect(DefectHeaderSyntax) {
					t.Errorf("Subject = %q, defects %v", m.Subject, m.Defects)
				}
			},
		},
		{
			name:     "malformed header line is skipped",
			give:     "Subject: a\nthis is not a header\nFrom: b@c.example\n\nbody\n",
			wantText: "body",
			check: func(t *testing.T, m *Message) {
				if m.Subject != "a" || m.From.Domain != "c.example" || !m.HasDefect(DefectHeaderSyntax) {
					t.Errorf("Subject %q From %+v defects %v", m.Subject, m.From, m.Defects)
				}
				if len(m.Header) != 2 || m.Header[0].Name != "Subject" || m.Header[1].Name != "From" {
					t.Errorf("Header = %+v, want Subject then From", m.Header)
				}
			},
		},
		{
			name:     "quoted-printable latin1",
			give:     "Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nCaf=E9 au=\n lait\n",
			wantText: "Café au lait",
		},
		{
			name:     "base64 utf-8",
			give:     "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n" + b64 + "\n",
			wantText: "Hello from base64, café",
			check: func(t *testing.T, m *Message) {
				if !m.Base64Text {
					t.Error("Base64Text = false")
				}
			},
		},
		{
			name:     "koi8-r",
			give:     "Content-Type: text/plain; charset=koi8-r\n\n\xf0\xd2\xc9\xd7\xc5\xd4\n",
			wantText: "Привет",
		},
		{
			name:     "unknown charset falls back",
			give:     "Content-Type: text/plain; charset=x-no-such\n\nplain words \xe9\n",
			wantText: "plain words é",
			check: func(t *testing.T, m *Message) {
				if !m.HasDefect(DefectUnknownCharset) {
					t.Errorf("defects %v, want %s", m.Defects, DefectUnknownCharset)
				}
			},
		},
		{
			name:     "encoded-word subject",
			give:     "Subject: =?utf-8?B?" + base64.StdEncoding.EncodeToString([]byte("Grüße")) + "?= =?iso-8859-1?Q?und_mehr?=\n\nx\n",
			wantText: "x",
			check: func(t *testing.T, m *Message) {
				if m.Subject != "Grüßeund mehr" {
					t.Errorf("Subject = %q", m.Subject)
				}
			},
		},
		{
			name: "alternative with html links and hidden text",
			give: `Content-Type: multipart/alternative; boundary="b1"

--b1
Content-Type: text/plain

See http://example.com/a
--b1
Content-Type: text/html

<html><body><p>Visit <a href="http://1.2.3.4/login">www.paypal.com</a></p>
<div style="display: none">hidden poison words here</div>
<font color="#FFFFFF">white text on white</font>
<img src="http://img.example.net/x.gif"><form action="http://evil.example/post"><input type=password></form>
<script>var x = "not text";</script></body></html>
--b1--
`,
			wantText:  "See http://example.com/a",
			wantHTML:  "Visit www.paypal.com",
			wantParts: 2,
			check: func(t *testing.T, m *Message) {
				if !m.Alternative || m.HTMLParts != 1 || m.TextParts != 1 {
					t.Errorf("alternative %v html %d text %d", m.Alternative, m.HTMLParts, m.TextParts)
				}
				if strings.Contains(m.HTMLText, "poison") || strings.Contains(m.HTMLText, "white text") || strings.Contains(m.HTMLText, "not text") {
					t.Errorf("HTMLText has hidden or script text: %q", m.HTMLText)
				}
				if m.HiddenText < 30 {
					t.Errorf("HiddenText = %d", m.HiddenText)
				}
				if m.Images != 1 || m.Forms != 1 || m.PasswordFields != 1 {
					t.Errorf("images %d forms %d password %d", m.Images, m.Forms, m.PasswordFields)
				}
				var href *Link
				for i, l := range m.Links {
					if l.Source == LinkHref {
						href = &m.Links[i]
					}
				}
				if href == nil || href.Host != "1.2.3.4" || !href.IP || href.Text != "www.paypal.com" {
					t.Errorf("href link = %+v", href)
				}
			},
		},
		{
			name: "nested multipart and attached message",
			give: `Content-Type: multipart/mixed; boundary=outer

--outer
Content-Type: multipart/related; boundary=inner

--inner
Content-Type: text/plain

inner text
--inner--
--outer
Content-Type: message/rfc822

Subject: forwarded subject
Content-Type: text/plain

forwarded body
--outer--
`,
			wantText:  "forwarded body",
			wantParts: 2,
			check: func(t *testing.T, m *Message) {
				if !strings.Contains(m.Text, "inner text") || !strings.Contains(m.Text, "forwarded subject") || m.Depth < 2 {
					t.Errorf("Text = %q, depth %d", m.Text, m.Depth)
				}
			},
		},
		{
			name:     "multipart without its boundary is read as text",
			give:     "Content-Type: multipart/mixed; boundary=nope\n\nbuy now cheap\n",
			wantText: "buy now cheap",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, raw := range [][]byte{[]byte(tt.give), crlf(tt.give)} {
				m := Parse(raw, Limits{})
				if !strings.Contains(strings.ReplaceAll(m.Text, "\r", ""), tt.wantText) {
					t.Errorf("Text = %q, want it to contain %q", m.Text, tt.wantText)
				}
				if tt.wantHTML != "" && !strings.Contains(m.HTMLText, tt.wantHTML) {
					t.Errorf("HTMLText = %q, want it to contain %q", m.HTMLText, tt.wantHTML)
				}
				if tt.wantParts != 0 && m.Parts != tt.wantParts {
					t.Errorf("Parts = %d, want %d", m.Parts, tt.wantParts)
				}
				if tt.check != nil {
					tt.check(t, m)
				}
			}
		})
	}
}

func zipOf(t testing.TB, names ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, n := range names {
		w, err := zw.Create(n)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(w, "content of %s", n)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func withAttachment(name, ctype string, content []byte) []byte {
	return []byte(fmt.Sprintf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nsee attached\n--b\n"+
		"Content-Type: %s; name=\"%s\"\nContent-Disposition: attachment; filename=\"%s\"\nContent-Transfer-Encoding: base64\n\n%s\n--b--\n",
		ctype, name, name, base64.StdEncoding.EncodeToString(content)))
}

func TestParse_Attachments(t *testing.T) {
	ole := append([]byte(magicOLE), bytes.Repeat([]byte{0}, 600)...)
	ole = append(ole, []byte(vbaOLE)...)
	tests := []struct {
		name, file, ctype string
		content           []byte
		want              func(a Attachment) bool
	}{
		{"exe by name", "invoice.exe", "application/octet-stream", []byte("hello"), func(a Attachment) bool { return a.Executable }},
		{"exe by content", "photo.jpg", "image/jpeg", append([]byte("MZ\x90\x00"), make([]byte, 100)...), func(a Attachment) bool { return a.Executable && a.TypeMismatch }},
		{"zip with exe", "docs.zip", "application/zip", zipOf(t, "readme.txt", "setup.scr"), func(a Attachment) bool {
			return a.Archive && a.ArchiveExecutable && len(a.Entries) == 2
		}},
		{"zip without exe", "docs.zip", "application/zip", zipOf(t, "a.txt"), func(a Attachment) bool { return a.Archive && !a.ArchiveExecutable }},
		{"zip disguised as gif", "x.gif", "image/gif", zipOf(t, "a.txt"), func(a Attachment) bool { return a.TypeMismatch }},
		{"ooxml with macros", "report.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
			zipOf(t, "[Content_Types].xml", "word/document.xml", "word/vbaProject.bin"), func(a Attachment) bool { return a.Macro && !a.Archive }},
		{"macro extension", "sheet.xlsm", "application/octet-stream", []byte("x"), func(a Attachment) bool { return a.Macro }},
		{"ole with vba", "old.doc", "application/msword", ole, func(a Attachment) bool { return a.Macro }},
		{"pdf", "paper.pdf", "application/pdf", []byte("%PDF-1.4 hello"), func(a Attachment) bool {
			return !a.Executable && !a.Macro && !a.Archive && a.SniffedType == "application/pdf" && a.Name == "paper.pdf"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Parse(withAttachment(tt.file, tt.ctype, tt.content), Limits{})
			if len(m.Attachments) != 1 {
				t.Fatalf("Attachments = %+v, want one", m.Attachments)
			}
			if a := m.Attachments[0]; !tt.want(a) {
				t.Errorf("Attachment = %+v", a)
			}
			if m.Attachments[0].Size != int64(len(tt.content)) {
				t.Errorf("Size = %d, want %d", m.Attachments[0].Size, len(tt.content))
			}
		})
	}
}

func TestParseLink(t *testing.T) {
	tests := []struct {
		give                 string
		wantOK               bool
		wantHost             string
		wantIP, wantObf, wUI bool
	}{
		{"http://Example.COM/path", true, "example.com", false, false, false},
		{"https://www.example.co.uk:8443/x", true, "www.example.co.uk", false, false, false},
		{"hxxp://evil[.]example/x", true, "evil.example", false, true, false},
		{"www.example.org/page", true, "www.example.org", false, false, false},
		{"http://3232235777/", true, "192.168.1.1", true, true, false},
		{"http://0xC0A80101/", true, "192.168.1.1", true, true, false},
		{"http://0300.0250.01.01/", true, "192.168.1.1", true, true, false},
		{"http://203.0.113.9/login", true, "203.0.113.9", true, false, false},
		{"http://www.bank.com@203.0.113.9/", true, "203.0.113.9", true, false, true},
		{"http://%77%77%77.example.com/", true, "www.example.com", false, true, false},
		{"mailto:someone@example.com", false, "", false, false, false},
		{"javascript:alert(1)", false, "", false, false, false},
		{"http://", false, "", false, false, false},
		{"http://localhost/", false, "", false, false, false},
	}
	for _, tt := range tests {
		l, ok := ParseLink(tt.give)
		if ok != tt.wantOK || l.Host != tt.wantHost || l.IP != tt.wantIP || l.Obfuscated != tt.wantObf || l.UserInfo != tt.wUI {
			t.Errorf("ParseLink(%q) = %+v, %v; want host %q ip %v obfuscated %v userinfo %v ok %v",
				tt.give, l, ok, tt.wantHost, tt.wantIP, tt.wantObf, tt.wUI, tt.wantOK)
		}
	}
}

func TestParse_TextLinksAndRedirectors(t *testing.T) {
	m := Parse([]byte("Subject: x\n\nGo to hxxp://bad.example/x, hxxps[:]//worse.example/y or http://rd.yahoo.com/click/*http://target.example/offer and www.plain.example.\n"), Limits{})
	hosts := map[string]LinkSource{}
	for _, l := range m.Links {
		hosts[l.Host] = l.Source
	}
	for host, src := range map[string]LinkSource{"bad.example": LinkText, "worse.example": LinkText, "rd.yahoo.com": LinkText, "target.example": LinkRedirect, "www.plain.example": LinkText} {
		if got, ok := hosts[host]; !ok || got != src {
			t.Errorf("link to %s: source %v (found %v), want %v; links %+v", host, got, ok, src, m.Links)
		}
	}
}

func TestParseAddressList(t *testing.T) {
	tests := []struct {
		give       string
		wantName   string
		wantDomain string
	}{
		{`"Jane Doe" <jane@Example.com>`, "Jane Doe", "example.com"},
		{`=?utf-8?Q?Ren=C3=A9?= <rene@example.fr>`, "René", "example.fr"},
		{`PayPal Security <<service@paypal.com>> <x@evil.example>`, "PayPal Security <<service@paypal.com>>", "evil.example"},
		{`broken "quote <a@b.example>`, "broken \"quote", "b.example"},
		{`just@bare.example`, "", "bare.example"},
	}
	for _, tt := range tests {
		got := ParseAddressList(tt.give, 1)
		if len(got) != 1 || got[0].Domain != tt.wantDomain || strings.TrimSpace(got[0].Name) != tt.wantName {
			t.Errorf("ParseAddressList(%q) = %+v, want name %q domain %q", tt.give, got, tt.wantName, tt.wantDomain)
		}
	}
}

// TestParse_Corpus parses every corpus message and checks that each MIME
// shape found there is read: text decoded to valid UTF-8, HTML rendered,
// attachments listed.
func TestParse_Corpus(t *testing.T) {
	dir := corpusDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	shapes := map[string]int{}
	for _, f := range files {
		if filepath.Base(f) == "labels.tsv" {
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m := Parse(raw, Limits{})
		if !utf8.ValidString(m.Text) || !utf8.ValidString(m.HTMLText) || !utf8.ValidString(m.Subject) {
			t.Errorf("%s: text is not valid UTF-8", f)
		}
		if !m.HasFrom {
			t.Errorf("%s: no From parsed", f)
		}
		if m.Text == "" && m.HTMLText == "" && len(m.Attachments) == 0 && len(raw) > 2000 {
			t.Errorf("%s: nothing extracted from %d bytes", f, len(raw))
		}
		switch {
		case m.Alternative:
			shapes["multipart/alternative"]++
		case len(m.Attachments) > 0:
			shapes["with attachments"]++
		case m.HTMLParts > 0 && m.TextParts == 0:
			shapes["html only"]++
		default:
			shapes["text only"]++
		}
		if m.Base64Text {
			shapes["base64 text"]++
		}
		if m.Depth >= 2 {
			shapes["nested multipart"]++
		}
		if len(m.TextCharsets) > 0 && m.TextCharsets[0] != "us-ascii" && m.TextCharsets[0] != "iso-8859-1" && m.TextCharsets[0] != "utf-8" {
			shapes["other charset"]++
		}
	}
	for _, s := range []string{"multipart/alternative", "with attachments", "html only", "text only", "base64 text", "nested multipart", "other charset"} {
		if shapes[s] == 0 {
			t.Errorf("no corpus message of shape %q was read; shapes %v", s, shapes)
		}
	}
	t.Logf("shapes: %v", shapes)
}

// TestParse_Robustness feeds hostile messages and checks that parsing ends
// quickly without panicking and keeps within the limits.
func TestParse_Robustness(t *testing.T) {
	big := bytes.Repeat([]byte("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\n"), 25<<20/37)
	var deep strings.Builder
	deep.WriteString("Subject: deep\n")
	for i := range 100 {
		fmt.Fprintf(&deep, "Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n", i, i)
	}
	deep.WriteString("Content-Type: text/plain\n\ninnermost\n")
	tests := []struct {
		name string
		give []byte
	}{
		{"25 MiB base64 attachment", append([]byte("Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"), big...)},
		{"25 MiB text body", append([]byte("Subject: big\n\n"), bytes.Repeat([]byte("spam words again and again\n"), 25<<20/27)...)},
		{"25 MiB html body", append([]byte("Content-Type: text/html\n\n"), bytes.Repeat([]byte("<p><a href='http://x.example/'>x</a></p>\n"), 25<<20/40)...)},
		{"100-deep multipart", []byte(deep.String())},
		{"1 MB header line", []byte("Subject: " + strings.Repeat("A", 1<<20) + "\nX-Long: " + strings.Repeat("b ", 1<<19) + "\n\nbody\n")},
		{"invalid base64", []byte("Content-Transfer-Encoding: base64\n\n!!!!@@@@####$$$$ not base64 at all ====\n")},
		{"NUL bytes", []byte("Subject: a\x00b\n\nbody\x00with\x00nuls\n")},
		{"unknown charset", []byte("Content-Type: text/html; charset=\"x-unknown-42\"\n\n<p>\xff\xfe text</p>\n")},
		{"no header end", []byte("Subject: nothing else")},
		{"empty", nil},
		{"header only garbage", []byte(":::\n \n\x00\xff\n")},
		{"broken boundary lines", []byte("Content-Type: multipart/mixed; boundary=\"q\"\n\n--q\n" + strings.Repeat("x", 10000) + "\n--q\nContent-Type: text/plain\n\nok\n")},
	}
	lim := DefaultLimits()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			m := Parse(tt.give, Limits{})
			if d := time.Since(start); d > 20*time.Second { // a hang, not a speed target (see BenchmarkClassify25MiB)
				t.Errorf("Parse took %v", d)
			}
			if len(m.Text)+len(m.HTMLText) > lim.MaxTextBytes+1 {
				t.Errorf("kept %d text bytes, limit %d", len(m.Text)+len(m.HTMLText), lim.MaxTextBytes)
			}
			if len(m.Links) > lim.MaxLinks || m.Depth > lim.MaxDepth || m.Parts > lim.MaxParts {
				t.Errorf("links %d depth %d parts %d beyond limits", len(m.Links), m.Depth, m.Parts)
			}
			for _, f := range m.Header {
				if len(f.Value) > lim.MaxFieldBytes {
					t.Errorf("header %s kept %d bytes", f.Name, len(f.Value))
				}
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("From: a@b.example\nSubject: hi\n\nhello http://x.example/\n"))
	f.Add([]byte("Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/html; charset=koi8-r\nContent-Transfer-Encoding: quoted-printable\n\n<a href=3D\"hxxp://1.2.3.4\">x</a>\n--b--\n"))
	f.Add(withAttachment("a.zip", "application/zip", []byte("PK\x03\x04garbage")))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := Parse(raw, Limits{MaxTextBytes: 4096})
		if len(m.Text)+len(m.HTMLText) > 4096+1 {
			t.Fatalf("kept %d text bytes", len(m.Text)+len(m.HTMLText))
		}
		if !utf8.ValidString(m.Text) || !utf8.ValidString(m.HTMLText) {
			t.Fatalf("invalid UTF-8 text")
		}
	})
}

func BenchmarkParse(b *testing.B) {
	dir := corpusDir(b)
	var msgs [][]byte
	for _, sub := range []string{"easy_ham", "hard_ham", "spam", "spam_2"} {
		files, _ := filepath.Glob(filepath.Join(dir, sub, "*"))
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err == nil && len(raw) >= 8<<10 && len(raw) <= 12<<10 {
				msgs = append(msgs, raw)
			}
		}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		Parse(msgs[i%len(msgs)], Limits{})
	}
}

func TestHTMLRendering(t *testing.T) {
	tests := []struct {
		give      string
		wantText  string
		wantLinks []string // hosts
		wantAnch  string   // anchor text of the first href
	}{
		{`<p>Hello <b>World</b></p>`, "Hello World", nil, ""},
		{`V<!-- x -->iag<span></span>ra`, "Viagra", nil, ""},
		{`<A HREF="http://x.example/?a=1&amp;b=2">Click &amp; save</A>`, "Click & save", []string{"x.example"}, "Click & save"},
		{`<a href='http://y.example/' title="a > b">quoted</a>`, "quoted", []string{"y.example"}, "quoted"},
		{`<a href=http://z.example/unquoted>z</a>`, "z", []string{"z.example"}, "z"},
		{`a < b and 3<4`, "a < b and 3<4", nil, ""},
		{`<script>document.write("<p>no</p>")</script>yes<STYLE>p{}</STYLE>`, "yes", nil, ""},
		{`<img src="http://img.example/a.gif" alt="x"/>after`, "after", []string{"img.example"}, ""},
		{`<p>unterminated <a href="http://u.example/`, "unterminated", nil, ""},
		{`&lt;tag&gt; &eacute;t&eacute;`, "<tag> été", nil, ""},
		{`<div style="DISPLAY : none">gone</div>kept`, "kept", nil, ""},
		{`<table bgcolor="#000000"><tr><td><font color="#ffffff">on dark</font></td></tr></table>`, "on dark", nil, ""},
	}
	for _, tt := range tests {
		m := Parse([]byte("Content-Type: text/html\n\n"+tt.give), Limits{})
		got := strings.Join(strings.Fields(m.HTMLText), " ")
		if got != tt.wantText {
			t.Errorf("render(%q) = %q, want %q", tt.give, got, tt.wantText)
		}
		var hosts []string
		anchor := ""
		for _, l := range m.Links {
			if l.Source == LinkHref || l.Source == LinkImage {
				hosts = append(hosts, l.Host)
				if l.Source == LinkHref && anchor == "" {
					anchor = l.Text
				}
			}
		}
		if strings.Join(hosts, ",") != strings.Join(tt.wantLinks, ",") || anchor != tt.wantAnch {
			t.Errorf("render(%q) links %v anchor %q, want %v %q", tt.give, hosts, anchor, tt.wantLinks, tt.wantAnch)
		}
	}
}

func TestDecodeQP(t *testing.T) {
	tests := []struct{ give, want string }{
		{"Caf=E9 au=\n lait", "Caf\xe9 au lait"},
		{"soft=\r\nbreak", "softbreak"},
		{"trailing= \nblank", "trailingblank"},
		{"lower=e9case", "lower\xe9case"},
		{"bad =ZZ and 100% = ok", "bad =ZZ and 100% = ok"},
		{"end=", "end="},
	}
	for _, tt := range tests {
		if got := string(decodeQP(nil, []byte(tt.give), &Message{})); got != tt.want {
			t.Errorf("decodeQP(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestParse_HeaderOrder(t *testing.T) {
	for _, give := range []string{
		"X-A: 1\nX-B: 2\nX-A: 3\n\nbody\n",
		"X-A: 1\nnot a field\nX-B: 2\nX-A: 3\n\nbody\n",
	} {
		m := Parse([]byte(give), Limits{})
		var got []string
		for _, f := range m.Header {
			got = append(got, f.Name+"="+f.Value)
		}
		if want := "X-A=1 X-B=2 X-A=3"; strings.Join(got, " ") != want {
			t.Errorf("Parse(%q).Header = %v, want %s", give, got, want)
		}
		if m.Get("x-a") != "1" {
			t.Errorf("Get(x-a) = %q, want the first field", m.Get("x-a"))
		}
	}
}
