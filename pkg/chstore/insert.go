package chstore

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
)

// table is one destination of events: its insert statement, and how an event
// becomes rows (none for an event of another type).
type table struct {
	name string
	// columns in the order rows() returns values.
	columns string
	// timeColumn holds the time rows() derives from the event's own fields,
	// identical in every copy of the event; Present narrows its search by it.
	timeColumn string
	rows       func(e *events.Event) [][]any
	// rowTime is the value of timeColumn for e.
	rowTime func(e *events.Event) time.Time
}

// tables lists where events go, in the order Insert writes them.
func tables() []table {
	return append([]table{
		{
			name: "messages",
			columns: "event_id, tenant, msg_id, message_id, from_domain, rcpts, rcpt_count, size, score, label, " +
				"symbols, symbol_weights, fingerprint, model, pool, reason, received, routed",
			timeColumn: "received",
			rows:       messageRows,
			rowTime:    func(e *events.Event) time.Time { return dateTime(e.Routed.Received) },
		},
		{
			name: "deliveries",
			columns: "event_id, time, tenant, msg_id, rcpt, rcpt_domain, pool, mx, source_ip, attempt, " +
				"reply_code, enhanced, reply_text, outcome, duration_ms, next_attempt, " +
				"site, mx_addr, tls, reused, connect_ms, tls_ms, txn_ms, reason, bounce",
			timeColumn: "time",
			rows:       deliveryRows,
			rowTime:    func(e *events.Event) time.Time { return dateTime(e.Time) },
		},
		{
			name:       "verdicts",
			columns:    "event_id, time, tenant, msg_id, score, label, symbols, symbol_weights, fingerprint, model",
			timeColumn: "time",
			rows:       verdictRows,
			rowTime:    func(e *events.Event) time.Time { return dateTime(e.Time) },
		},
	}, append(feedbackTables(), ipEventsTable())...)
}

// Storable reports whether Insert writes rows for e: a verdict, routed,
// delivery, feedback, shaping or dnsbl event with its payload. Other events
// are skipped by Insert.
func Storable(e *events.Event) bool {
	switch e.Type {
	case events.TypeVerdict:
		return e.Verdict != nil
	case events.TypeRouted:
		return e.Routed != nil
	case events.TypeDelivery:
		return e.Delivery != nil && len(e.Delivery.Rcpts) > 0
	}
	return feedbackStorable(e) || ipEventStorable(e)
}

// Insert writes evs, one batch per table. An event id repeated within evs
// is written once; events that are not Storable are skipped. The tables are
// written one after the other, not atomically: after an error some may hold
// their rows, and calling Insert again with the same events duplicates
// those, which the tables' ReplacingMergeTree engine and Present absorb.
func (s *Store) Insert(ctx context.Context, evs []*events.Event) error {
	evs = unique(evs)
	for _, t := range tables() {
		var rows [][]any
		for _, e := range evs {
			if Storable(e) {
				rows = append(rows, t.rows(e)...)
			}
		}
		if len(rows) == 0 {
			continue
		}
		if err := s.insert(ctx, t, rows); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) insert(ctx context.Context, t table, rows [][]any) error {
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+t.name+" ("+t.columns+")")
	if err != nil {
		return fmt.Errorf("insert %s: %w", t.name, err)
	}
	for _, r := range rows {
		if err := b.Append(r...); err != nil {
			_ = b.Abort()
			return fmt.Errorf("insert %s: %w", t.name, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert %s: %w", t.name, err)
	}
	return nil
}

// Present returns the ids of those evs that already have rows. A caller that
// may be repeating an insert (a redelivered event, a retry after a partial
// failure) drops these first, so that plain counts stay exact without waiting
// for merges. The lookup goes through the tables' primary key (tenant,
// msg_id) and only the partitions the events' times point to.
func (s *Store) Present(ctx context.Context, evs []*events.Event) (map[string]bool, error) {
	found := map[string]bool{}
	// ClickHouse limits a query's text to 256 KiB by default (max_query_size).
	const chunk = 500
	for _, t := range tables() {
		var todo []*events.Event
		for _, e := range evs {
			if Storable(e) && len(t.rows(e)) > 0 {
				todo = append(todo, e)
			}
		}
		for len(todo) > 0 {
			n := min(chunk, len(todo))
			if err := s.present(ctx, t, todo[:n], found); err != nil {
				return nil, err
			}
			todo = todo[n:]
		}
	}
	return found, nil
}

func (s *Store) present(ctx context.Context, t table, evs []*events.Event, found map[string]bool) error {
	var tenants, msgIDs, ids []any
	seen := map[string]bool{}
	add := func(list *[]any, kind, v string) {
		if !seen[kind+v] {
			seen[kind+v] = true
			*list = append(*list, v)
		}
	}
	from, to := t.rowTime(evs[0]), t.rowTime(evs[0])
	for _, e := range evs {
		add(&tenants, "t:", e.Tenant)
		add(&msgIDs, "m:", e.MsgID)
		add(&ids, "e:", e.ID)
		rt := t.rowTime(e)
		if rt.Before(from) {
			from = rt
		}
		if rt.After(to) {
			to = rt
		}
	}
	q := fmt.Sprintf("SELECT DISTINCT event_id FROM %s WHERE %s BETWEEN ? AND ? AND tenant IN ? AND msg_id IN ? AND event_id IN ?",
		t.name, t.timeColumn)
	rows, err := s.conn.Query(ctx, q, from, to,
		clickhouse.GroupSet{Value: tenants}, clickhouse.GroupSet{Value: msgIDs}, clickhouse.GroupSet{Value: ids})
	if err != nil {
		return fmt.Errorf("look up %s: %w", t.name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return fmt.Errorf("look up %s: %w", t.name, err)
		}
		found[id] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("look up %s: %w", t.name, err)
	}
	return nil
}

// unique drops later events whose id was seen earlier in evs.
func unique(evs []*events.Event) []*events.Event {
	seen := make(map[string]bool, len(evs))
	out := evs[:0:0]
	for _, e := range evs {
		if seen[e.ID] {
			continue
		}
		seen[e.ID] = true
		out = append(out, e)
	}
	return out
}

func messageRows(e *events.Event) [][]any {
	if e.Type != events.TypeRouted || e.Routed == nil {
		return nil
	}
	r := e.Routed
	names, weights := symbols(r.Verdict.Symbols)
	rcpts := r.Rcpts
	if rcpts == nil {
		rcpts = []string{}
	}
	return [][]any{{
		e.ID, e.Tenant, e.MsgID, r.MessageID, r.FromDomain, rcpts, clampU32(int64(len(rcpts))),
		uint64(max(r.Size, 0)), r.Verdict.Score, r.Verdict.Label, names, weights,
		r.Verdict.Fingerprint, r.Verdict.Model, r.Pool, r.Reason, dateTime(r.Received), dateTime(e.Time),
	}}
}

func deliveryRows(e *events.Event) [][]any {
	if e.Type != events.TypeDelivery || e.Delivery == nil {
		return nil
	}
	d := e.Delivery
	rows := make([][]any, 0, len(d.Rcpts))
	for _, r := range d.Rcpts {
		domain := d.Domain
		if domain == "" {
			domain = envelope.Domain(r.Rcpt)
		}
		rows = append(rows, []any{
			e.ID, dateTime(e.Time), e.Tenant, e.MsgID, r.Rcpt, domain, d.Pool, d.MX, d.SourceIP,
			clampU16(int64(d.Attempt)), clampU16(int64(r.Code)), r.Enhanced, r.Text, string(r.Outcome),
			clampU32(d.DurationMs), dateTime(d.NextAttempt),
			d.Site, d.MXAddr, boolU8(d.TLS), boolU8(d.Reused), clampU32(d.ConnectMs), clampU32(d.TLSMs),
			clampU32(d.TxnMs), r.Reason, r.Bounce,
		})
	}
	return rows
}

func verdictRows(e *events.Event) [][]any {
	if e.Type != events.TypeVerdict || e.Verdict == nil {
		return nil
	}
	v := e.Verdict
	names, weights := symbols(v.Symbols)
	return [][]any{{
		e.ID, dateTime(e.Time), e.Tenant, e.MsgID, v.Score, v.Label, names, weights, v.Fingerprint, v.Model,
	}}
}

// symbols splits symbols into the parallel name and weight arrays of a row.
func symbols(syms []events.Symbol) ([]string, []float64) {
	names := make([]string, len(syms))
	weights := make([]float64, len(syms))
	for i, s := range syms {
		names[i], weights[i] = s.Name, s.Weight
	}
	return names, weights
}

// dateTime fits t into a DateTime column: the zero time (no value) and
// anything before 1970 become 1970-01-01 00:00:00, the column's zero.
func dateTime(t time.Time) time.Time {
	// DateTime holds an unsigned 32-bit count of seconds since the epoch.
	switch sec := t.Unix(); {
	case sec < 0:
		return time.Unix(0, 0).UTC()
	case sec > math.MaxUint32:
		return time.Unix(math.MaxUint32, 0).UTC()
	}
	return t.UTC().Truncate(time.Second)
}

func clampU16(v int64) uint16 { return uint16(min(max(v, 0), math.MaxUint16)) }
func clampU32(v int64) uint32 { return uint32(min(max(v, 0), math.MaxUint32)) }

func boolU8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
