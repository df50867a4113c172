//go:build integration

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/bcrypt"

	"github.com/outflowmail/outflow/pkg/events"

	"github.com/outflowmail/outflow/pkg/chtest"
	"github.com/outflowmail/outflow/pkg/smtpload"
	"github.com/outflowmail/outflow/pkg/smtptest"
)

// procConfig is what the YAML template of the subprocess tests needs.
type procConfig struct {
	NATSListen, StoreDir, Submit, MX, ClickHouse, Hash string
	Capture, CaptureDir                                string
}

var configTemplate = template.Must(template.New("cfg").Parse(`
log: {level: info, format: text}
nats:
  embedded: {listen: "{{.NATSListen}}", store_dir: "{{.StoreDir}}", sync_always: true}
pools:
  - {name: shared, purpose: shared, ips: [{address: 127.0.0.2, ehlo: shared.e2e.test}]}
  - {name: high-risk, purpose: high-risk, ips: [{address: 127.0.0.3, ehlo: risk.e2e.test}]}
tenants:
  - {id: e2e, password_hash: "{{.Hash}}", domains: [e2e.example], client_ips: [127.0.0.1/32]}
ingest:
  hostname: submit.e2e.test
  shutdown_grace: 5s
  limits: {rate: 0}   # the flows here are faster than a new tenant's rate
  listeners:
    - {name: submission, addr: "{{.Submit}}", tls: none, allow_insecure_auth: true, client_ip_tenants: true}
sender:
  transports: {"*": "{{.MX}}"}
analytics:
  clickhouse: {addr: "{{.ClickHouse}}"}
  flush_interval: 200ms
  reputation: {enabled: false}   # these flows are not about reputation; the abuse drill is
{{if .Capture}}capture: {enabled: true, addr: "{{.Capture}}", dir: "{{.CaptureDir}}"}{{end}}
`))

// writeConfig writes a config for subprocesses; ClickHouse defaults to a
// closed port, which analytics must survive (events wait in JetStream).
func writeConfig(tb testing.TB, pc procConfig) string {
	tb.Helper()
	if pc.NATSListen == "" {
		pc.NATSListen = freeAddr(tb)
	}
	if pc.StoreDir == "" {
		pc.StoreDir = filepath.Join(tb.TempDir(), "nats")
	}
	if pc.Submit == "" {
		pc.Submit = freeAddr(tb)
	}
	if pc.ClickHouse == "" {
		pc.ClickHouse = freeAddr(tb)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(tenantPass), bcrypt.MinCost)
	if err != nil {
		tb.Fatal(err)
	}
	pc.Hash = string(h)
	var b bytes.Buffer
	if err := configTemplate.Execute(&b, pc); err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "outflow.yaml")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// synthetic makes n small distinct messages whose last line (END-i) shows
// that a stored copy is complete.
func synthetic(prefix string, n int) []smtpload.Message {
	msgs := make([]smtpload.Message, n)
	for i := range msgs {
		key := fmt.Sprintf("%s-%d@e2e.test", prefix, i)
		msgs[i] = smtpload.Message{
			Key: key, From: "sender@e2e.example", To: []string{fmt.Sprintf("r%d@d%d.example", i, i%7)},
			Data: fmt.Appendf(nil, "Message-ID: <%s>\r\nFrom: Sender <sender@e2e.example>\r\nTo: r%d@d%d.example\r\n"+
				"Subject: order %d confirmation\r\nDate: Sun, 29 Nov 2026 03:00:00 +0000\r\n\r\n"+
				"Hello,\r\n\r\nyour order %d has shipped and will arrive on Tuesday.\r\n\r\nRegards,\r\nThe shop\r\nEND-%d\r\n",
				key, i, i%7, i, i, i),
		}
	}
	return msgs
}

// TestCrash_SIGKILLLosesNothing kills "outflow all" with SIGKILL while 2,000
// messages flow, restarts it on the same store, and checks that every
// message that got a 250 is delivered. Duplicates are allowed (at-least-once)
// and reported.
func TestCrash_SIGKILLLosesNothing(t *testing.T) {
	const n = 2000
	mx := smtptest.Start(t, smtptest.Options{})
	submit := freeAddr(t)
	cfgPath := writeConfig(t, procConfig{Submit: submit, MX: mx.Addr()})
	p := startProcess(t, "outflow all (first)", "all", "-config", cfgPath)
	waitListening(t, submit, 30*time.Second)

	msgs := synthetic("crash", n)
	var accepted atomic.Int64
	resc := make(chan []smtpload.Result, 1)
	go func() {
		// Submitted one session per message batch so that the kill hits
		// sessions mid-transaction.
		rs := smtpload.Run(context.Background(), smtpload.Options{Addr: submit, Sessions: 10}, msgs)
		resc <- rs
	}()
	// Kill once mail is flowing through every stage.
	eventually(t, 60*time.Second, "first deliveries", func() (bool, string) {
		got := len(mx.Messages())
		accepted.Store(int64(got))
		return got >= 300, fmt.Sprintf("%d delivered", got)
	})
	if err := p.stop(t, syscall.SIGKILL, 10*time.Second); err == nil {
		t.Fatal("outflow exited cleanly after SIGKILL?")
	}
	killedAt := len(mx.Messages())
	results := <-resc
	var want []string
	for _, r := range results {
		if r.Accepted {
			want = append(want, r.Key)
		}
	}
	if len(want) <= killedAt {
		t.Fatalf("only %d accepted, %d delivered before the kill: the kill came too late to test anything", len(want), killedAt)
	}
	t.Logf("accepted before the kill: %d of %d; delivered before the kill: %d", len(want), n, killedAt)

	startProcess(t, "outflow all (restarted)", "all", "-config", cfgPath)
	eventually(t, 90*time.Second, "every accepted message delivered", func() (bool, string) {
		seen := map[string]bool{}
		for _, m := range mx.Messages() {
			seen[messageID(m.Data)] = true
		}
		missing := 0
		for _, k := range want {
			if !seen[k] {
				missing++
			}
		}
		return missing == 0, fmt.Sprintf("%d of %d accepted messages missing", missing, len(want))
	})
	counts := map[string]int{}
	for _, m := range mx.Messages() {
		counts[messageID(m.Data)]++
	}
	dups := 0
	for _, c := range counts {
		dups += c - 1
	}
	t.Logf("crash: %d accepted, all delivered, %d duplicate deliveries (%.2f%%)", len(want), dups, 100*float64(dups)/float64(len(want)))
}

// TestShutdown_SIGTERMDrains stops "outflow all" with SIGTERM while mail
// flows into the capture receiver: the process exits cleanly, no file in the
// sink is half written, and after a restart every accepted message is there.
func TestShutdown_SIGTERMDrains(t *testing.T) {
	const n = 1000
	sink := t.TempDir()
	capAddr, submit := freeAddr(t), freeAddr(t)
	cfgPath := writeConfig(t, procConfig{Submit: submit, MX: capAddr, Capture: capAddr, CaptureDir: sink})
	p := startProcess(t, "outflow all (first)", "all", "-config", cfgPath)
	waitListening(t, submit, 30*time.Second)

	msgs := synthetic("term", n)
	resc := make(chan []smtpload.Result, 1)
	go func() { resc <- smtpload.Run(context.Background(), smtpload.Options{Addr: submit, Sessions: 10}, msgs) }()
	eventually(t, 60*time.Second, "first files in the sink", func() (bool, string) {
		files, _ := filepath.Glob(filepath.Join(sink, "*.eml"))
		return len(files) >= 100, fmt.Sprintf("%d files", len(files))
	})
	if err := p.stop(t, syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatalf("outflow after SIGTERM: %v (want a clean exit)", err)
	}
	results := <-resc
	checkSink(t, sink, true)

	var want []string
	for _, r := range results {
		if r.Accepted {
			want = append(want, r.Key)
		}
	}
	t.Logf("accepted before SIGTERM: %d of %d", len(want), n)
	startProcess(t, "outflow all (restarted)", "all", "-config", cfgPath)
	eventually(t, 60*time.Second, "every accepted message in the sink", func() (bool, string) {
		got := checkSink(t, sink, false)
		missing := 0
		for _, k := range want {
			if got[k] == 0 {
				missing++
			}
		}
		return missing == 0, fmt.Sprintf("%d missing", missing)
	})
}

// checkSink reads every file in the capture directory, fails the test on an
// incomplete message (and, when stopped, on a leftover temporary file), and
// counts messages by Message-ID.
func checkSink(t *testing.T, dir string, stopped bool) map[string]int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".eml") {
			// The receiver writes to a temporary name and renames: while it
			// runs such files are normal, after a clean stop none may remain.
			if stopped {
				t.Errorf("stray file %s in the sink after shutdown (half-written?)", e.Name())
			}
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		key := messageID(data)
		var i int
		if _, err := fmt.Sscanf(key, "term-%d@e2e.test", &i); err != nil || !bytes.Contains(data, fmt.Appendf(nil, "END-%d\r\n", i)) {
			t.Errorf("%s is incomplete or foreign (Message-ID %q)", e.Name(), key)
		}
		got[key]++
	}
	return got
}

// TestMultiProcess_RolesAsSeparateProcesses runs a standalone NATS server and
// each role as its own process, two senders among them, against a private
// ClickHouse: mail flows and both senders deliver a share.
func TestMultiProcess_RolesAsSeparateProcesses(t *testing.T) {
	const n = 400
	ch := chtest.Start(t)
	mx := smtptest.Start(t, smtptest.Options{})
	natsAddr, submit := freeAddr(t), freeAddr(t)
	cfgPath := writeConfig(t, procConfig{NATSListen: natsAddr, Submit: submit, MX: mx.Addr(), ClickHouse: ch.Addr()})
	startProcess(t, "outflow nats", "nats", "-config", cfgPath)
	waitListening(t, natsAddr, 30*time.Second)
	url := "nats://" + natsAddr
	// Count delivery events per sender process, straight from the bus.
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	bySender := map[string]int{}
	if _, err := nc.Subscribe(events.Subject+"."+string(events.TypeDelivery), func(m *nats.Msg) {
		evs, _ := events.UnmarshalAll(m.Data)
		for _, ev := range evs {
			if ev.Delivery != nil {
				mu.Lock()
				bySender[ev.Delivery.Sender]++
				mu.Unlock()
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"analytics", "sender", "sender", "router", "classifier", "ingest"} {
		startProcess(t, "outflow "+role, role, "-config", cfgPath, "-nats", url)
	}
	waitListening(t, submit, 30*time.Second)
	msgs := synthetic("multi", n)
	rs := smtpload.Run(context.Background(), smtpload.Options{Addr: submit, Sessions: 8}, msgs)
	if s := smtpload.Summarize(rs); s.Accepted != n {
		t.Fatalf("accepted %+v of %d", s, n)
	}
	got := mx.Wait(t, n)
	seen := map[string]bool{}
	for _, m := range got {
		seen[messageID(m.Data)] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct messages delivered, want %d", len(seen), n)
	}
	eventually(t, 10*time.Second, "delivery events from two senders", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		total := 0
		for _, c := range bySender {
			total += c
		}
		return len(bySender) == 2 && total >= n, fmt.Sprint(bySender)
	})
	mu.Lock()
	t.Logf("delivery attempts per sender process: %v", bySender)
	mu.Unlock()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{ch.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	eventually(t, 30*time.Second, "ClickHouse rows from the analytics process", func() (bool, string) {
		var m uint64
		_ = conn.QueryRow(context.Background(), "SELECT uniqExact(msg_id) FROM outflow.messages").Scan(&m)
		return m == n, fmt.Sprintf("%d messages rows", m)
	})
}
