//go:build integration

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outflowmail/outflow/pkg/classify"
)

// corpusDir is the shared SpamAssassin corpus, relative to this package.
const corpusDir = "../../shared/corpus/spamassassin"

// corpusMessage is a corpus mail made into a submission: mbox line and
// Message-ID replaced, so that the receiver can count it exactly.
type corpusMessage struct {
	Key   string // our Message-ID, without brackets
	Data  []byte
	Label string // engine's label, computed here
	Spam  bool   // corpus label
}

// loadCorpus returns up to nHam ham and nSpam spam messages with unique
// Message-IDs prefixed by prefix, each labelled by the real engine so that
// the test knows which pool the router must choose.
func loadCorpus(tb testing.TB, prefix string, nHam, nSpam int) []corpusMessage {
	tb.Helper()
	f, err := os.Open(filepath.Join(corpusDir, "labels.tsv"))
	if err != nil {
		tb.Fatalf("corpus: %v", err)
	}
	defer f.Close()
	eng, err := classify.New(classify.DefaultConfig())
	if err != nil {
		tb.Fatal(err)
	}
	var out []corpusMessage
	haveHam, haveSpam := 0, 0
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() && (haveHam < nHam || haveSpam < nSpam) {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) < 2 {
			continue
		}
		spam := cols[1] == "spam"
		if (spam && haveSpam >= nSpam) || (!spam && haveHam >= nHam) {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(corpusDir, cols[0]))
		if err != nil {
			tb.Fatal(err)
		}
		key := fmt.Sprintf("%s-%d@e2e.test", prefix, len(out))
		data, ok := submission(raw, key)
		if !ok {
			continue
		}
		v, err := eng.Classify(context.Background(), data)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, corpusMessage{Key: key, Data: data, Label: string(v.Label), Spam: spam})
		if spam {
			haveSpam++
		} else {
			haveHam++
		}
	}
	return out
}

// submission strips the mbox "From " line and the Message-ID, adds ours,
// and refuses messages an SMTP server would (lines over 998 octets, RFC 5322
// 2.1.1).
func submission(raw []byte, key string) ([]byte, bool) {
	if bytes.HasPrefix(raw, []byte("From ")) {
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			raw = raw[i+1:]
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "Message-ID: <%s>\n", key)
	inHeader, skipping := true, false
	for _, line := range bytes.SplitAfter(raw, []byte("\n")) {
		if len(line) > 990 || bytes.IndexByte(line, 0) >= 0 {
			return nil, false
		}
		if inHeader {
			if len(bytes.TrimRight(line, "\r\n")) == 0 {
				inHeader = false
			} else if line[0] == ' ' || line[0] == '\t' {
				if skipping {
					continue
				}
			} else {
				skipping = bytes.HasPrefix(bytes.ToLower(line), []byte("message-id:"))
				if skipping {
					continue
				}
			}
		}
		b.Write(line)
	}
	return b.Bytes(), true
}

// messageID reads the Message-ID of a received message.
func messageID(data []byte) string {
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return ""
	}
	return strings.Trim(m.Header.Get("Message-Id"), "<> ")
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
