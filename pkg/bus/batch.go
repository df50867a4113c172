package bus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/envelope"
)

// Group commit. Messages published to a stage's stream (SUBMITTED,
// CLASSIFIED, and each pool's subject of OUTBOUND) while an earlier publish
// to the same subject waits for JetStream go out together, as one stream
// message (a batch; groupcommit.go, as for events). With sync_always every
// stored message costs an fsync, and on this kind of machine the fsync,
// with the journal writes it causes, is the largest single cost of a
// message (pprof: 15 % of the process's CPU, and as much again in the
// kernel's journal threads); a work queue's ack writes an fsync'd
// tombstone too, one per batch instead of one per job. Nothing waits for
// a batch to fill: a lone message is published at once, in the ordinary
// one-message form, so batching only happens when messages arrive faster
// than JetStream stores them.
//
// A batch carries each message's headers and data; Consume hands them to
// the handler one by one, concurrently (at most Consumer.Workers at once),
// as if each had been delivered on its own (batchMsg), and acknowledges the
// batch when every one of them is done. If any asks to be redelivered, the
// whole batch is, with the longest delay asked for: the ones already
// handled come again, which at-least-once allows; a delivery job that
// finished, or that the sender has in hand, is then acknowledged without
// being sent again (services/sender/handled.go), and a deferred one's
// retry is stored once (its schedule's Nats-Msg-Id). What a batch
// gives up is the Nats-Msg-Id of each message in it: a publish retried
// after a lost acknowledgement may store a message twice, with the same
// consequences.
const (
	// HeaderBatch, on a batch, is the number of messages in it.
	HeaderBatch = "Outflow-Batch"

	maxStreamBatch      = 64
	maxStreamBatchBytes = 512 << 10
)

// batched reports whether publishes to subject are batched: the stages'
// (the feedback spool's reports arrive one by one and may be large).
func batched(subject string) bool {
	return subject == SubjectSubmitted || subject == SubjectClassified || strings.HasPrefix(subject, SubjectOutbound+".")
}

type pendingMsg struct {
	msgID string
	m     *nats.Msg
}

func (p *pendingMsg) size() int { return len(p.m.Data) + 512 } // headers: envelope JSON, ids

// publishBatched stores m (headers and data set) and returns when
// JetStream has acknowledged it, alone or within a batch.
func (b *Bus) publishBatched(ctx context.Context, msgID string, m *nats.Msg) error {
	q := queueFor(&b.evMu, &b.batchQueues, m.Subject, func() *groupQueue[*pendingMsg] {
		bq := &batchQueue{b: b, subject: m.Subject}
		return &groupQueue[*pendingMsg]{maxItems: maxStreamBatch, maxBytes: maxStreamBatchBytes,
			size: (*pendingMsg).size, publish: bq.publish}
	})
	return q.add(ctx, &pendingMsg{msgID: msgID, m: m}, msgID)
}

// batchQueue publishes the batches of one subject.
type batchQueue struct {
	b       *Bus
	subject string
}

func (q *batchQueue) publish(batch []*pendingMsg) error {
	m, msgID := batch[0].m, batch[0].msgID
	if len(batch) > 1 {
		m, msgID = encodeBatch(q.subject, batch)
	}
	ctx, cancel := context.WithTimeout(context.Background(), q.b.cfg.PublishTimeout)
	defer cancel()
	if _, err := q.b.JS.PublishMsg(ctx, m, jetstream.WithMsgID(msgID)); err != nil {
		if len(batch) > 1 {
			return fmt.Errorf("publish %d messages to %s as %s: %w", len(batch), q.subject, msgID, err)
		}
		return fmt.Errorf("publish %s to %s: %w", msgID, q.subject, err)
	}
	return nil
}

// encodeBatch packs messages into one: for each, its header count, each
// header's name and value, and its data, every field preceded by its
// length as a uvarint.
func encodeBatch(subject string, batch []*pendingMsg) (*nats.Msg, string) {
	size := 0
	for _, p := range batch {
		size += len(p.m.Data) + 16
		for k, vs := range p.m.Header {
			for _, v := range vs {
				size += len(k) + len(v) + 8
			}
		}
	}
	data := make([]byte, 0, size)
	field := func(s string) {
		data = binary.AppendUvarint(data, uint64(len(s)))
		data = append(data, s...)
	}
	tenant := batch[0].m.Header.Get(envelope.HeaderTenant)
	for _, p := range batch {
		n := 0
		for _, vs := range p.m.Header {
			n += len(vs)
		}
		data = binary.AppendUvarint(data, uint64(n))
		for k, vs := range p.m.Header {
			for _, v := range vs {
				field(k)
				field(v)
			}
		}
		data = binary.AppendUvarint(data, uint64(len(p.m.Data)))
		data = append(data, p.m.Data...)
		if p.m.Header.Get(envelope.HeaderTenant) != tenant {
			tenant = ""
		}
	}
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header = nats.Header{}
	m.Header.Set(HeaderBatch, strconv.Itoa(len(batch)))
	// For tooling that filters by tenant; a batch of several has none.
	if tenant != "" {
		m.Header.Set(envelope.HeaderTenant, tenant)
	}
	return m, "batch." + batch[0].msgID + "." + batch[len(batch)-1].msgID + "." + strconv.Itoa(len(batch))
}

var errBadBatch = errors.New("malformed batch")

// decodeBatch unpacks a batch into its messages' headers and data
// (sharing data's memory).
func decodeBatch(data []byte, n int) ([]nats.Header, [][]byte, error) {
	if n < 1 || n > maxStreamBatch {
		return nil, nil, fmt.Errorf("%w: %s %d", errBadBatch, HeaderBatch, n)
	}
	field := func() ([]byte, error) {
		l, k := binary.Uvarint(data)
		if k <= 0 || l > uint64(len(data)-k) {
			return nil, errBadBatch
		}
		f := data[k : k+int(l)]
		data = data[k+int(l):]
		return f, nil
	}
	hdrs, bodies := make([]nats.Header, n), make([][]byte, n)
	for i := range n {
		nh, k := binary.Uvarint(data)
		if k <= 0 || nh > uint64(len(data)) {
			return nil, nil, fmt.Errorf("%w: message %d", errBadBatch, i+1)
		}
		data = data[k:]
		h := make(nats.Header, nh)
		for range nh {
			key, err := field()
			if err != nil {
				return nil, nil, fmt.Errorf("%w: message %d", err, i+1)
			}
			v, err := field()
			if err != nil {
				return nil, nil, fmt.Errorf("%w: message %d", err, i+1)
			}
			h[string(key)] = append(h[string(key)], string(v))
		}
		body, err := field()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: message %d", err, i+1)
		}
		hdrs[i], bodies[i] = h, body
	}
	if len(data) != 0 {
		return nil, nil, fmt.Errorf("%w: %d bytes after the last message", errBadBatch, len(data))
	}
	return hdrs, bodies, nil
}

// handleBatch hands each message of a batch to h, concurrently, and
// acknowledges the batch once all are done, or asks for all of it again
// when any asked to be redelivered.
// slots bounds how many messages of batches are handled at once across the
// consumer's workers (Consumer.Workers), as the workers bound single ones.
func (b *Bus) handleBatch(ctx context.Context, c Consumer, log *slog.Logger, h Handler, m jetstream.Msg, slots chan struct{}) {
	if b.deadLettered(ctx, c, log, m) {
		return
	}
	n, _ := strconv.Atoi(m.Headers().Get(HeaderBatch))
	hdrs, bodies, err := decodeBatch(m.Data(), n)
	if err != nil {
		// Kept for inspection rather than dropped or retried forever.
		log.Error("batch cannot be read; moved to the dead-letter stream", "consumer", c.Durable, "err", err)
		b.deadLetter(ctx, c, log, m, 0)
		return
	}
	// The batch stays in hand while its messages wait for a slot or run:
	// redelivered meanwhile, its messages would be handled twice at once.
	defer KeepInProgress(m, c.AckWait/3)()
	subs := make([]*batchMsg, n)
	var wg sync.WaitGroup
	for i := range n {
		subs[i] = &batchMsg{Msg: m, hdr: hdrs[i], data: bodies[i]}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			b.handleOne(ctx, c, log, h, subs[i])
		})
	}
	wg.Wait()
	var redeliver bool
	var delay time.Duration
	for _, s := range subs {
		switch s.outcome {
		case outcomeAck, outcomeTerm:
		case outcomeNone:
			// A handler that said nothing; Handler's contract was broken,
			// so be safe: again, soon.
			redeliver, delay = true, max(delay, 5*time.Second)
		default:
			redeliver, delay = true, max(delay, s.delay)
		}
	}
	if !redeliver {
		// Confirmed, and tried again: a batch whose ack is lost comes
		// again whole.
		var err error
		for i := range 3 {
			if i > 0 {
				time.Sleep(time.Duration(i) * 200 * time.Millisecond)
			}
			actx, cancel := context.WithTimeout(ctx, b.cfg.PublishTimeout)
			err = m.DoubleAck(actx)
			cancel()
			if err == nil || errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
				return
			}
		}
		log.Warn("ack batch; it will come again", "consumer", c.Durable, "messages", n, "err", err)
		return
	}
	if err := m.NakWithDelay(delay); err != nil {
		log.Warn("nak batch", "consumer", c.Durable, "messages", n, "err", err)
	}
}

type outcome int

const (
	outcomeNone outcome = iota
	outcomeAck
	outcomeNak
	outcomeTerm
)

// batchMsg is one message of a batch as its handler sees it: its
// own headers and data; the batch's subject and metadata (so that
// NumDelivered counts the batch's deliveries); acknowledgements recorded
// for handleBatch, except InProgress, which goes to the batch at once.
type batchMsg struct {
	jetstream.Msg
	hdr  nats.Header
	data []byte

	mu      sync.Mutex
	outcome outcome
	delay   time.Duration
}

func (s *batchMsg) Headers() nats.Header { return s.hdr }
func (s *batchMsg) Data() []byte         { return s.data }

func (s *batchMsg) set(o outcome, delay time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outcome != outcomeNone {
		return jetstream.ErrMsgAlreadyAckd
	}
	s.outcome, s.delay = o, delay
	return nil
}

func (s *batchMsg) Ack() error                         { return s.set(outcomeAck, 0) }
func (s *batchMsg) DoubleAck(context.Context) error    { return s.set(outcomeAck, 0) }
func (s *batchMsg) Nak() error                         { return s.set(outcomeNak, 0) }
func (s *batchMsg) NakWithDelay(d time.Duration) error { return s.set(outcomeNak, d) }
func (s *batchMsg) Term() error                        { return s.set(outcomeTerm, 0) }
func (s *batchMsg) TermWithReason(reason string) error { return s.set(outcomeTerm, 0) }
func (s *batchMsg) InProgress() error                  { return s.Msg.InProgress() }
