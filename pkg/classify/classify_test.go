package classify

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func corpusDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join("..", "..", "..", "shared", "corpus", "spamassassin")
	if _, err := os.Stat(filepath.Join(dir, "labels.tsv")); err != nil {
		t.Skipf("corpus not present: %v", err)
	}
	return dir
}

func newEngine(t testing.TB) *Engine {
	t.Helper()
	cfg := DefaultConfig()
	cfg.MaxSymbols = 1000
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Config)
		wantKey string // "" means valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"suspect negative", func(c *Config) { c.SuspectThreshold = -1 }, "suspect_threshold"},
		{"spam below suspect", func(c *Config) { c.SpamThreshold = 10 }, "spam_threshold"},
		{"spam above 100", func(c *Config) { c.SpamThreshold = 101 }, "spam_threshold"},
		{"malicious weight", func(c *Config) { c.MaliciousWeight = -2 }, "malicious_weight"},
		{"max symbols", func(c *Config) { c.MaxSymbols = 0 }, "max_symbols"},
		{"max text", func(c *Config) { c.MaxTextBytes = 10 }, "max_text_bytes"},
		{"equal thresholds", func(c *Config) { c.SuspectThreshold, c.SpamThreshold = 80, 80 }, ""},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		tt.edit(&cfg)
		err := cfg.Validate()
		if tt.wantKey == "" && err != nil || tt.wantKey != "" && (err == nil || !strings.Contains(err.Error(), tt.wantKey)) {
			t.Errorf("%s: Validate() = %v, want error naming %q", tt.name, err, tt.wantKey)
		}
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New(Config{}) accepted a zero config")
	}
}

func TestLabelThresholds(t *testing.T) {
	cfg := Config{SuspectThreshold: 40, SpamThreshold: 80}
	tests := []struct {
		score     float64
		malicious bool
		want      Label
	}{
		{0, false, LabelClean},
		{39.99, false, LabelClean},
		{40, false, LabelSuspect},
		{79.99, false, LabelSuspect},
		{80, false, LabelSpam},
		{100, false, LabelSpam},
		{0, true, LabelMalicious},
		{95, true, LabelMalicious},
	}
	for _, tt := range tests {
		if got := cfg.label(tt.score, tt.malicious); got != tt.want {
			t.Errorf("label(%v, %v) = %s, want %s", tt.score, tt.malicious, got, tt.want)
		}
	}
}

func hasSymbol(v Verdict, name string) bool {
	for _, s := range v.Symbols {
		if s.Name == name {
			return true
		}
	}
	return false
}

const header = "From: Alice Example <alice@example.com>\nTo: bob@example.org\nDate: Mon, 2 Sep 2002 10:00:00 +0100\nMessage-ID: <1@example.com>\n"

// TestRules checks that each feature family fires on a message built to
// show it, and not on a plain one.
func TestRules(t *testing.T) {
	e := newEngine(t)
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	if w, err := zw.Create("setup.exe"); err == nil {
		w.Write([]byte("MZ program"))
	}
	zw.Close()
	zipExe := base64.StdEncoding.EncodeToString(zb.Bytes())
	tests := []struct {
		rule string
		give string
	}{
		{"FROM_NAME_OTHER_DOMAIN", "From: \"paypal.com\" <x@evil.example>\nSubject: hi\n\nhello\n"},
		{"FROM_NAME_HAS_ADDRESS", "From: \"service@paypal.com\" <x@evil.example>\nSubject: hi\n\nhello\n"},
		{"REPLYTO_OTHER_DOMAIN", header + "Reply-To: x@other.example\nSubject: hi\n\nhello\n"},
		{"MISSING_MESSAGE_ID", "From: a@example.com\nDate: Mon, 2 Sep 2002 10:00:00 +0100\nSubject: hi\n\nhello\n"},
		{"MISSING_DATE", "From: a@example.com\nMessage-ID: <1@example.com>\nSubject: hi\n\nhello\n"},
		{"SUBJECT_SHOUTING", header + "Subject: MAKE MONEY FAST NOW\n\nhello\n"},
		{"SUBJECT_ENCODED_ASCII", header + "Subject: =?utf-8?B?RlJFRSBtb25leQ==?=\n\nhello\n"},
		{"SUBJECT_TRAILING_ID", header + "Subject: Your offer            8273\n\nhello\n"},
		{"HTML_ONLY", header + "Subject: hi\nContent-Type: text/html\n\n<p>hello there</p>\n"},
		{"HTML_LITTLE_TEXT", header + "Subject: hi\nContent-Type: text/html\n\n<p>hello there</p>\n"},
		{"IMAGE_ONLY", header + "Subject: hi\nContent-Type: text/html\n\n<img src=\"http://img.example/a.gif\">\n"},
		{"INVISIBLE_TEXT", header + "Subject: hi\nContent-Type: text/html\n\n<p>hi</p><span style=\"font-size:0px\">lorem ipsum dolor sit amet consectetur</span>\n"},
		{"URL_IP_HOST", header + "Subject: hi\n\nclick http://198.51.100.7/offer\n"},
		{"URL_SHORTENER", header + "Subject: hi\n\nclick http://bit.ly/abc\n"},
		{"URL_REDIRECTOR", header + "Subject: hi\n\nclick http://r.example.net/?url=http://target.example/\n"},
		{"URL_OBFUSCATED", header + "Subject: hi\n\nclick hxxp://bad[.]example/\n"},
		{"URL_USERINFO", header + "Subject: hi\n\nclick http://www.bank.example@bad.example/\n"},
		{"URL_MANY_ONE_HOST", header + "Subject: hi\n\n" + strings.Repeat("http://one.example/x\n", 12)},
		{"LINK_TEXT_MISMATCH", header + "Subject: hi\nContent-Type: text/html\n\n<a href=\"http://bad.example/\">https://www.mybank.com/</a>\n"},
		{"URL_FROM_DOMAIN", header + "Subject: hi\n\nsee http://www.example.com/\n"},
		{"BODY_SHOUTING", header + "Subject: hi\n\n" + strings.Repeat("BUY THIS NOW BEFORE IT IS GONE ", 10)},
		{"HTML_FORM", header + "Subject: hi\nContent-Type: text/html\n\n<form action=\"http://x.example/\"><input name=q></form>\n"},
		{"PHISH_PHRASE", header + "Subject: hi\n\nPlease verify your account today at http://www.example.com/\n"},
		{"PHISH_CREDENTIALS", header + "Subject: hi\nContent-Type: text/html\n\n<p>Please verify your account</p><a href=\"http://203.0.113.5/\">Log in</a>\n"},
		{"PHISH_CREDENTIALS", header + "Subject: hi\nContent-Type: text/html\n\n<form><input type=\"password\" name=p></form>\n"},
		{"ATTACH_EXECUTABLE", header + "Subject: hi\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: application/octet-stream; name=run.exe\nContent-Transfer-Encoding: base64\n\nTVqQAAMAAAAEAAAA\n--b--\n"},
		{"ATTACH_ARCHIVE_EXECUTABLE", header + "Subject: hi\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: application/zip; name=a.zip\nContent-Transfer-Encoding: base64\n\n" + zipExe + "\n--b--\n"},
		{"ATTACH_MACRO", header + "Subject: hi\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: application/octet-stream; name=a.docm\n\nx\n--b--\n"},
		{"MIME_DEFECT", header + "Subject: hi\nContent-Type: text/plain; charset=x-bogus\n\nhello\n"},
	}
	plain, err := e.Classify(context.Background(), []byte(header+"Subject: lunch\n\nSee you at noon.\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		v, err := e.Classify(context.Background(), []byte(tt.give))
		if err != nil {
			t.Fatalf("%s: Classify: %v", tt.rule, err)
		}
		if !hasSymbol(v, tt.rule) {
			t.Errorf("%s: symbols %v, want %s", tt.rule, v.Symbols, tt.rule)
		}
		if hasSymbol(plain, tt.rule) {
			t.Errorf("%s fires on a plain message: %v", tt.rule, plain.Symbols)
		}
	}
}

func TestClassify_Malicious(t *testing.T) {
	e := newEngine(t)
	exe := base64.StdEncoding.EncodeToString(append([]byte("MZ\x90\x00"), make([]byte, 200)...))
	msg := header + "Subject: invoice\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nPlease see the invoice.\n--b\n" +
		"Content-Type: application/pdf; name=invoice.pdf\nContent-Transfer-Encoding: base64\n\n" + exe + "\n--b--\n"
	v, err := e.Classify(context.Background(), []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if v.Label != LabelMalicious || !hasSymbol(v, "ATTACH_EXECUTABLE") {
		t.Errorf("Classify(exe disguised as pdf) = %s %v, want malicious with ATTACH_EXECUTABLE", v.Label, v.Symbols)
	}
}

var hex16 = regexp.MustCompile(`^[0-9a-f]{16}$`)

func TestClassify_Verdict(t *testing.T) {
	e := newEngine(t)
	v, err := e.Classify(context.Background(), []byte(header+"Subject: lunch\n\nSee you at noon.\n"))
	if err != nil {
		t.Fatal(err)
	}
	if v.Score < 0 || v.Score > 100 || !hex16.MatchString(v.Fingerprint) || !strings.HasPrefix(v.Model, "lr-") || len(v.Symbols) == 0 {
		t.Errorf("Classify = %+v", v)
	}
	// The symbols add up to the logit behind the score.
	var sum float64
	for _, s := range v.Symbols {
		sum += s.Weight
	}
	if got := 100 * sigmoid(sum); got-v.Score > 0.5 || v.Score-got > 0.5 {
		t.Errorf("symbols sum to score %.2f, verdict says %.2f", got, v.Score)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Classify(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Classify(cancelled) = %v, want context.Canceled", err)
	}
}

func TestFingerprint(t *testing.T) {
	e := newEngine(t)
	body := "Dear %s,\n\nOur spring collection is here: linen shirts, summer dresses and sandals, all at twenty percent off until Sunday. " +
		"Visit the shop to see every new piece, order before noon for next-day delivery, and keep an eye on your inbox for the member preview.\n\nThe Shop team %d\n"
	fp := func(msg string) uint64 {
		v, err := e.Classify(context.Background(), []byte(msg))
		if err != nil {
			t.Fatal(err)
		}
		x, err := strconv.ParseUint(v.Fingerprint, 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	a := fp(header + "Subject: a\n\n" + fmt.Sprintf(body, "Ann", 1))
	b := fp("From: other@tenant.example\nSubject: b\nContent-Type: text/html\n\n<p>" + fmt.Sprintf(body, "Bob", 2) + "</p>")
	c := fp(header + "Subject: c\n\nThe build failed on the arm64 runner again; the linker runs out of memory when LTO is on. I will split the job tomorrow and report back.\n")
	if d := bits.OnesCount64(a ^ b); d > 12 {
		t.Errorf("same campaign differs in %d bits", d)
	}
	if d := bits.OnesCount64(a ^ c); d < 16 {
		t.Errorf("unrelated messages differ in only %d bits", d)
	}
}

// TestClassify_Corpus scores a sample of every corpus subset with the
// embedded model (trained on this corpus, so this checks wiring, not
// quality: quality is measured by cross-validation in make eval-classifier).
func TestClassify_Corpus(t *testing.T) {
	dir := corpusDir(t)
	e := newEngine(t)
	for _, sub := range []string{"easy_ham", "easy_ham_2", "hard_ham", "spam", "spam_2"} {
		files, _ := filepath.Glob(filepath.Join(dir, sub, "*"))
		if len(files) > 40 {
			files = files[:40]
		}
		var wrong int
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			v, err := e.Classify(context.Background(), raw)
			if err != nil {
				t.Fatal(err)
			}
			spam := strings.HasPrefix(sub, "spam")
			if spam != (v.Label == LabelSpam || v.Label == LabelMalicious) {
				wrong++
			}
			if !spam && v.Label == LabelSpam {
				t.Errorf("%s: ham labelled spam (score %v)", f, v.Score)
			}
		}
		if wrong > len(files)/5 {
			t.Errorf("%s: %d of %d wrong", sub, wrong, len(files))
		}
	}
}

func TestClassify_Robustness(t *testing.T) {
	e := newEngine(t)
	var deep strings.Builder
	for i := range 100 {
		fmt.Fprintf(&deep, "Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n", i, i)
	}
	deep.WriteString("Content-Type: text/plain\n\ninnermost\n")
	tests := []struct {
		name string
		give []byte
	}{
		{"25 MiB", big25MiB()},
		{"100-deep multipart", []byte(deep.String())},
		{"1 MB header line", []byte("Subject: " + strings.Repeat("FREE ", 1<<18) + "\n\nbody\n")},
		{"invalid base64", []byte("Content-Transfer-Encoding: base64\n\n%%%% not base64 ====\n")},
		{"NUL bytes", []byte("Subject: \x00\x00\n\n\x00body\x00\n")},
		{"unknown charset", []byte("Content-Type: text/plain; charset=x-nope\n\n\xff\xfe\n")},
		{"empty", nil},
	}
	for _, tt := range tests {
		start := time.Now()
		v, err := e.Classify(context.Background(), tt.give)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
		if d := time.Since(start); d > 20*time.Second { // a hang, not a speed target (see BenchmarkClassify25MiB)
			t.Errorf("%s: took %v", tt.name, d)
		}
		if v.Score < 0 || v.Score > 100 || v.Label == "" {
			t.Errorf("%s: verdict %+v", tt.name, v)
		}
	}
}

// big25MiB is a 25 MiB message: text, HTML and a large base64 attachment.
func big25MiB() []byte {
	var b bytes.Buffer
	b.WriteString(header + "Subject: quarterly report\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\n")
	for b.Len() < 4<<20 {
		b.WriteString("The quarterly figures are attached; revenue rose in every region except the north.\n")
	}
	b.WriteString("--b\nContent-Type: text/html\n\n")
	for b.Len() < 8<<20 {
		b.WriteString("<p>Figures <a href=\"http://reports.example.com/q3\">here</a></p>\n")
	}
	b.WriteString("--b\nContent-Type: application/octet-stream; name=data.bin\nContent-Transfer-Encoding: base64\n\n")
	line := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x5a, 0x17, 0x99}, 19)) + "\n"
	for b.Len() < 25<<20-64 {
		b.WriteString(line)
	}
	b.WriteString("--b--\n")
	return b.Bytes()
}

func TestClassify_Concurrent(t *testing.T) {
	e := newEngine(t)
	msgs := [][]byte{
		[]byte(header + "Subject: lunch\n\nSee you at noon.\n"),
		[]byte(header + "Subject: FREE MONEY!!!\nContent-Type: text/html\n\n<a href=\"http://1.2.3.4/\">click here</a>\n"),
	}
	want := make([]Verdict, len(msgs))
	for i, m := range msgs {
		want[i], _ = e.Classify(context.Background(), m)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				k := (g + i) % len(msgs)
				v, err := e.Classify(context.Background(), msgs[k])
				if err != nil || v.Score != want[k].Score || v.Fingerprint != want[k].Fingerprint {
					t.Errorf("concurrent Classify = %+v, %v; want %+v", v, err, want[k])
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestTrain_Deterministic trains twice on the same data and checks the
// model bytes are identical, and that the model separates its data.
func TestTrain_Deterministic(t *testing.T) {
	var exs []Example
	for i := range 60 {
		exs = append(exs,
			Example{Msg: []byte(fmt.Sprintf(header+"Subject: meeting %d\n\nThe agenda for the design review, item %d, is attached.\n", i, i))},
			Example{Msg: []byte(fmt.Sprintf("From: win%d@prize.example\nSubject: WIN CASH NOW %d\nContent-Type: text/html\n\n<a href=\"http://203.0.113.%d/\">Claim your free prize</a>\n", i, i, i%250)), Spam: true})
	}
	ctx := context.Background()
	m1, err := Train(ctx, exs, TrainOptions{Bits: 16, Epochs: 4})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Train(ctx, exs, TrainOptions{Bits: 16, Epochs: 4})
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := m1.MarshalBinary()
	b2, _ := m2.MarshalBinary()
	if !bytes.Equal(b1, b2) || m1.Version() != m2.Version() {
		t.Fatal("two trainings on the same data gave different models")
	}
	e, err := NewWithModel(DefaultConfig(), m1)
	if err != nil {
		t.Fatal(err)
	}
	ham, _ := e.Classify(ctx, []byte(header+"Subject: meeting 99\n\nThe agenda for the design review is attached.\n"))
	spam, _ := e.Classify(ctx, []byte("From: win7@prize.example\nSubject: WIN CASH NOW\nContent-Type: text/html\n\n<a href=\"http://203.0.113.9/\">Claim your free prize</a>\n"))
	if ham.Score >= spam.Score {
		t.Errorf("trained model scores ham %v >= spam %v", ham.Score, spam.Score)
	}
	if _, err := Train(ctx, exs[:1], TrainOptions{}); !errors.Is(err, ErrNoExamples) {
		t.Errorf("Train(one class) = %v, want ErrNoExamples", err)
	}
}

func TestLoadModel_Bad(t *testing.T) {
	good, err := (&Model{bits: 10, norm: 8, tokens: make([]float32, 1024)}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadModel(good); err != nil {
		t.Fatalf("LoadModel(good) = %v", err)
	}
	for _, bad := range [][]byte{nil, []byte("OFLR"), []byte("XXXX\x01\x14"), good[:len(good)-3], append([]byte("OFLR\x01\x40"), good[6:]...)} {
		if _, err := LoadModel(bad); !errors.Is(err, ErrModelFormat) {
			t.Errorf("LoadModel(%q) = %v, want ErrModelFormat", bad, err)
		}
	}
}

// typicalMessages returns corpus messages of 8 to 12 KiB.
func typicalMessages(b *testing.B) [][]byte {
	dir := corpusDir(b)
	var out [][]byte
	for _, sub := range []string{"easy_ham", "hard_ham", "spam", "spam_2"} {
		files, _ := filepath.Glob(filepath.Join(dir, sub, "*"))
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err == nil && len(raw) >= 8<<10 && len(raw) <= 12<<10 {
				out = append(out, raw)
			}
		}
	}
	if len(out) == 0 {
		b.Skip("no typical messages")
	}
	return out
}

func BenchmarkClassify(b *testing.B) {
	msgs := typicalMessages(b)
	e := newEngine(b)
	ctx := context.Background()
	var bytesTotal int
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	for i := 0; b.Loop(); i++ {
		m := msgs[i%len(msgs)]
		bytesTotal += len(m)
		if _, err := e.Classify(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	cpu = processCPU() - cpu
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(bytesTotal)/float64(b.N), "bytes/msg")
	if cpu > 0 {
		// Messages per second of CPU time (GC included): the figure that
		// other processes on a shared machine do not drag down.
		b.ReportMetric(float64(b.N)/(float64(cpu)/1e9), "msgs/cpu-s")
	}
}

func BenchmarkClassify25MiB(b *testing.B) {
	msg := big25MiB()
	e := newEngine(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := e.Classify(context.Background(), msg); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzClassify(f *testing.F) {
	f.Add([]byte(header + "Subject: hi\n\nhello http://x.example/\n"))
	f.Add([]byte("From: \"paypal.com\" <a@b.example>\nSubject: =?utf-8?q?verify_your_account?=\nContent-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/html\n\n<a href=\"hxxp://0x7f000001/\">www.paypal.com</a><div style=\"display:none\">x</div>\n--b--\n"))
	e, err := New(DefaultConfig())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		v, err := e.Classify(context.Background(), raw)
		if err != nil {
			t.Fatal(err)
		}
		if v.Score < 0 || v.Score > 100 || !hex16.MatchString(v.Fingerprint) {
			t.Fatalf("verdict %+v", v)
		}
	})
}

// TestClassify_BoundedMemory checks that scoring a 25 MiB message allocates
// a small, bounded amount beside the message itself.
func TestClassify_BoundedMemory(t *testing.T) {
	e := newEngine(t)
	msg := big25MiB()
	ctx := context.Background()
	e.Classify(ctx, msg) // warm the engine's pools
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := e.Classify(ctx, msg); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 24<<20 {
		t.Errorf("Classify(25 MiB) allocated %d MiB, want under 24 MiB", alloc>>20)
	}
}
