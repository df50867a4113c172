package shaping

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/jsdeclare"
)

// BucketName is the KV bucket holding the shared shaping state:
//
//	conn.<ip>.<site>.<slot>     a taken connection slot (per-key TTL: the lease)
//	want.<ip>.<site>            a process waits for a slot of the pair (TTL 1 s)
//	rate.<ip>.<site>            theoretical arrival time of the per-second rate (GCRA)
//	rateh.<ip>.<site>           the same for the per-hour rate
//	backoff.<ip|_all>.<site>    a backoff action in force (TTL: its duration)
//	warm.<ip>.<site>.<yyyymmdd> messages counted against a warm-up cap that day
//	dnsbl.<ip>                  the IP's blocklist listings (written by pkg/dnsbl)
const BucketName = "shaping"

// Bucket declares (idempotently) the shaping bucket. Keys carry their own
// TTLs (NATS 2.11 per-message TTL), so a crashed process's slots and
// expired actions disappear by themselves.
func Bucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	if replicas < 1 {
		replicas = 1
	}
	kv, err := jsdeclare.KeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      BucketName,
		Description: "traffic shaping: connection slots, rates, backoff, warm-up, blocklist listings",
		History:     1,
		// In memory: every write is on a hot path (a connection, a block of
		// messages) and the embedded server fsyncs file writes before it
		// acknowledges them. The state is short-lived, and what a full NATS
		// restart loses is bounded: slots and rates start afresh, backoff
		// actions end early, the DNSBL monitor's next round (run at start)
		// restores listings, and a warming IP may send up to twice its cap
		// that day. With nats.replicas 3 a single server restart loses none.
		Storage:  jetstream.MemoryStorage,
		Replicas: replicas,
		// Needed for per-key TTLs; the markers a TTL leaves are kept this long
		// so that watchers see the key go.
		LimitMarkerTTL: time.Minute,
	})
	if err != nil {
		return nil, err
	}
	return kv, nil
}

// token makes s usable as one or more key tokens: KV keys allow only
// [-/_=.a-zA-Z0-9]. Addresses lose their dots and colons so that the key's
// layout stays fixed.
func token(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch {
		case c == '-' || c == '_' || c == '=' || c == '/',
			'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			b.WriteRune(c)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

// IPToken is an address as one key token (127.0.0.2 → 127-0-0-2).
func IPToken(ip string) string {
	return token(strings.Map(func(r rune) rune {
		if r == '.' || r == ':' {
			return '-'
		}
		return r
	}, ip))
}

// siteToken is a site as key tokens: dots stay, so sites read naturally.
func siteToken(site string) string {
	parts := strings.Split(site, ".")
	for i, p := range parts {
		parts[i] = token(p)
	}
	return strings.Join(parts, ".")
}

// DNSBLKey is the key of an IP's blocklist listings.
func DNSBLKey(ip string) string { return "dnsbl." + IPToken(ip) }

// Listing is the value of a dnsbl key: the zones that list the IP.
type Listing struct {
	IP    string       `json:"ip"`
	Zones []ZoneListed `json:"zones"`
	// Checked is when the IP was last looked up; Next when it will be
	// again (a listed IP is usable at the earliest then).
	Checked time.Time `json:"checked"`
	Next    time.Time `json:"next"`
}

// ZoneListed is one zone's listing of an IP.
type ZoneListed struct {
	Zone   string `json:"zone"`
	Answer string `json:"answer"`
	Reason string `json:"reason,omitempty"`
}

// Listed reports whether any zone lists the IP.
func (l Listing) Listed() bool { return len(l.Zones) > 0 }

// putTTL writes key with a TTL; last writer wins.
func (s *Shaper) putTTL(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	_, err := publishTTL(ctx, s.js, key, value, ttl, nil)
	return err
}

// publishTTL writes key in the shaping bucket with a per-key TTL (at least
// 1 s, NATS' granularity), optionally only if its revision is still rev
// (compare-and-set), and returns the new revision. KeyValue.Update cannot set a TTL, so this publishes
// to the key's subject as the KV layer does.
func publishTTL(ctx context.Context, js jetstream.JetStream, key string, value []byte, ttl time.Duration, rev *uint64) (uint64, error) {
	ttl = max(ttl.Round(time.Second), time.Second)
	m := &nats.Msg{Subject: "$KV." + BucketName + "." + key, Data: value}
	opts := []jetstream.PublishOpt{jetstream.WithMsgTTL(ttl)}
	if rev != nil {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(*rev))
	}
	ack, err := js.PublishMsg(ctx, m, opts...)
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", key, err)
	}
	return ack.Sequence, nil
}

// isConflict reports a lost compare-and-set.
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
	}
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// startWatch loads the backoff, warm-up, blocklist and connection slot
// state and keeps it current, hears other processes wait for slots, so that Sources, AllowMessage and (mostly)
// AcquireConn answer from memory.
func (s *Shaper) startWatch(ctx, run context.Context) error {
	w, err := s.kv.WatchFiltered(run, []string{"backoff.>", "warm.>", "dnsbl.>", "conn.>", "want.>"})
	if err != nil {
		return fmt.Errorf("watch %s: %w", BucketName, err)
	}
	// The watcher sends every current value, then a nil entry.
	for {
		select {
		case e := <-w.Updates():
			if e == nil {
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					defer func() { _ = w.Stop() }()
					for e := range w.Updates() {
						if e != nil {
							s.apply(e)
						}
					}
				}()
				return nil
			}
			s.apply(e)
		case <-ctx.Done():
			_ = w.Stop()
			return fmt.Errorf("load %s: %w", BucketName, ctx.Err())
		}
	}
}

// apply updates the in-memory state from one watched entry.
func (s *Shaper) apply(e jetstream.KeyValueEntry) {
	key := e.Key()
	gone := e.Operation() != jetstream.KeyValuePut
	if strings.HasPrefix(key, "want.") {
		if !gone {
			s.heardWaiting(e.Value())
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case strings.HasPrefix(key, "conn."):
		// Slots are taken, rewritten and freed; a purge, a delete or the
		// marker a lapsed TTL leaves all mean free.
		if gone {
			delete(s.slots, key)
		} else {
			s.slots[key] = s.now()
		}
	case strings.HasPrefix(key, "backoff."):
		if gone {
			delete(s.backoff, key)
			return
		}
		var b backoffState
		if json.Unmarshal(e.Value(), &b) == nil {
			s.backoff[key] = b
		}
	case strings.HasPrefix(key, "warm."):
		if gone {
			delete(s.warm, key)
			return
		}
		var c warmCount
		if json.Unmarshal(e.Value(), &c) == nil && c.N > s.warm[key] {
			s.warm[key] = c.N
		}
	case strings.HasPrefix(key, "dnsbl."):
		var l Listing
		if gone || json.Unmarshal(e.Value(), &l) != nil {
			for ip := range s.listed {
				if DNSBLKey(ip) == key {
					delete(s.listed, ip)
				}
			}
			return
		}
		s.listed[l.IP] = l
	}
}
