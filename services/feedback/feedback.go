// Package feedback is the feedback worker role: it consumes the reports the
// MX listener spooled on the FEEDBACK stream (asynchronous bounces,
// feedback-loop complaints, DMARC aggregate reports), parses them, ties
// each to its tenant and message, publishes bounce, complaint and dmarc
// events, and puts hard-bounced and complaining recipients on the tenant's
// suppression list. Every report is counted by a feedback_report event;
// one that cannot be parsed is kept on the dead-letter stream, never
// dropped.
package feedback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/metrics"
	"github.com/outflowmail/outflow/pkg/suppression"
	"github.com/outflowmail/outflow/pkg/tenant"
	"github.com/outflowmail/outflow/pkg/verp"
)

// SubjectUnparsed is where reports that could not be parsed are kept, on
// the dead-letter stream (30 days), with the reason in a header.
const SubjectUnparsed = bus.SubjectDead + ".feedback-unparsed"

// HeaderUnparsed carries the parse error of a kept report.
const HeaderUnparsed = "Outflow-Unparsed-Error"

// Config of the feedback role.
type Config struct {
	// Workers is how many reports are handled at once.
	Workers int `yaml:"workers"`
	// Suppression says how long entries last.
	Suppression suppression.Config `yaml:"suppression"`
	// PurgeInterval is how often expired suppression entries are deleted
	// (every worker process does it; concurrent purges are harmless).
	PurgeInterval time.Duration `yaml:"purge_interval"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Workers: 2, Suppression: suppression.DefaultConfig(), PurgeInterval: time.Hour}
}

// Validate names the first bad key.
func (c Config) Validate() error {
	if c.Workers < 1 {
		return errors.New("feedback.workers: must be at least 1")
	}
	if c.PurgeInterval < time.Minute {
		return errors.New("feedback.purge_interval: must be at least 1m")
	}
	return c.Suppression.Validate()
}

// Report classes.
const (
	ClassDSN       = "dsn"
	ClassARF       = "arf"
	ClassDMARC     = "dmarc"
	ClassAutoReply = "autoreply"
	ClassUnparsed  = "unparsed"
)

// Finding is what a parser made of a report.
type Finding struct {
	// Class is dsn, arf, dmarc or autoreply.
	Class string
	// Bounces are the failed recipients of a DSN.
	Bounces []events.Bounce
	// Complaint is the ARF report (Attribution and ReportID left empty).
	Complaint *events.Complaint
	// DMARC is the aggregate report.
	DMARC *events.DMARC
	// Original holds what the report quotes of the original message.
	Original Original
}

// Original is what a report quotes of the message it is about: enough to
// find the tenant and message when the return path does not say.
type Original struct {
	// ReturnPath is the original's Return-Path (or an ARF report's
	// Original-Mail-From): our VERP address when we sent it.
	ReturnPath string
	MessageID  string
	FeedbackID string
	// Received are the original's Received header values, top first.
	Received []string
}

// Parser reads a raw report received at a mailbox (bounce, fbl, dmarc).
// An error means the report is kept for inspection as unparsed.
type Parser interface {
	Parse(mailbox string, raw []byte) (Finding, error)
}

// Tenants looks tenants up (a *tenant.Directory), so that a report naming
// an unknown tenant is not attributed to it.
type Tenants interface {
	Tenant(id string) *tenant.Tenant
}

// Stats counts reports by outcome since the worker started, exposed as
// metrics; the feedback_report events carry the same in ClickHouse.
type Stats struct {
	Reports, Unparsed, AutoReplies, Forged, Unattributed, Suppressed *metrics.Counter
}

func newStats(reg *metrics.Registry) Stats {
	return Stats{
		Reports:      reg.Counter("outflow_feedback_reports_total", "Reports handled by the feedback worker."),
		Unparsed:     reg.Counter("outflow_feedback_unparsed_total", "Reports that could not be parsed, kept on the dead-letter stream."),
		AutoReplies:  reg.Counter("outflow_feedback_autoreplies_total", "Auto-replies received at a bounce address, ignored."),
		Forged:       reg.Counter("outflow_feedback_forged_total", "Reports whose VERP token failed the HMAC check."),
		Unattributed: reg.Counter("outflow_feedback_unattributed_total", "Reports that could not be tied to a tenant."),
		Suppressed:   reg.Counter("outflow_feedback_suppressed_total", "Recipients put on a suppression list."),
	}
}

// Deps are what a worker works with besides its configuration.
type Deps struct {
	Parser Parser
	// VERP reads return paths back; nil when VERP is off (attribution by
	// the original's headers only).
	VERP    *verp.Codec
	Tenants Tenants
	// Metrics receives the worker's counters; nil keeps them unexposed.
	Metrics *metrics.Registry
	Log     *slog.Logger
}

// Worker handles reports.
type Worker struct {
	cfg     Config
	bus     *bus.Bus
	parser  Parser
	verp    *verp.Codec // nil when VERP is off
	tenants Tenants
	supp    *suppression.Store
	log     *slog.Logger
	Stats   Stats
}

// New returns a worker.
func New(ctx context.Context, cfg Config, b *bus.Bus, d Deps) (*Worker, error) {
	s, err := suppression.Open(ctx, b.JS, b.Config().Replicas)
	if err != nil {
		return nil, err
	}
	return &Worker{cfg: cfg, bus: b, parser: d.Parser, verp: d.VERP, tenants: d.Tenants, supp: s, log: d.Log,
		Stats: newStats(d.Metrics)}, nil
}

// Run consumes the feedback stream until ctx ends, and purges expired
// suppression entries meanwhile.
func (w *Worker) Run(ctx context.Context) error {
	purgeCtx, stopPurge := context.WithCancel(ctx)
	purged := make(chan struct{})
	go func() {
		defer close(purged)
		w.purge(purgeCtx)
	}()
	defer func() { stopPurge(); <-purged }()
	c := bus.Consumer{Stream: bus.StreamFeedback, Durable: "feedback", Workers: w.cfg.Workers}
	err := w.bus.Consume(ctx, c, w.log, func(ctx context.Context, m jetstream.Msg) {
		if err := w.Handle(ctx, m.Subject(), m.Headers(), m.Data()); err != nil {
			w.log.Warn("handle report; will retry", "err", err)
			_ = m.NakWithDelay(5 * time.Second)
			return
		}
		if err := m.Ack(); err != nil {
			w.log.Warn("ack report", "err", err)
		}
	})
	w.log.Info("feedback worker stopped", "reports", w.Stats.Reports.Value(), "unparsed", w.Stats.Unparsed.Value(),
		"autoreplies", w.Stats.AutoReplies.Value(), "forged", w.Stats.Forged.Value(), "suppressed", w.Stats.Suppressed.Value())
	return err
}

// purge deletes expired suppression entries every PurgeInterval until ctx
// ends.
func (w *Worker) purge(ctx context.Context) {
	t := time.NewTicker(w.cfg.PurgeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n, err := w.supp.Purge(ctx, now)
			if err != nil {
				w.log.Warn("purge expired suppressions", "err", err)
			} else if n > 0 {
				w.log.Info("expired suppressions purged", "count", n)
			}
		}
	}
}

// Handle processes one spooled report. An error means nothing final
// happened that a retry would repeat wrongly: every event id and
// suppression entry is derived from the report, so a retry is idempotent.
func (w *Worker) Handle(ctx context.Context, subject string, h nats.Header, payload []byte) error {
	env, err := envelope.Decode(h)
	if err != nil {
		return err
	}
	mailbox := subject[strings.LastIndexByte(subject, '.')+1:]
	raw, release, err := w.bus.Body(ctx, env, payload)
	if err != nil {
		return err
	}
	defer release()
	rep := &events.Report{ReportID: env.ID, Mailbox: mailbox, Size: env.Size}
	f, perr := w.parser.Parse(mailbox, raw)
	if perr != nil {
		return w.unparsed(ctx, env, h, payload, rep, perr)
	}
	rep.Class = f.Class
	var evs []*events.Event
	var entries []suppression.Entry
	switch f.Class {
	case ClassDSN:
		evs, entries = w.bounces(env, f, rep)
	case ClassARF:
		evs, entries = w.complaint(env, f, rep)
	case ClassDMARC:
		ev := w.event(env, env.ID+".dmarc", events.TypeDMARC, "", env.ID)
		d := *f.DMARC
		d.ReportID = env.ID
		ev.DMARC = &d
		evs = append(evs, ev)
	case ClassAutoReply:
	default:
		return w.unparsed(ctx, env, h, payload, rep, fmt.Errorf("parser gave unknown class %q", f.Class))
	}
	for _, e := range entries {
		added, err := w.supp.Add(ctx, e)
		if err != nil {
			return err
		}
		if added {
			w.Stats.Suppressed.Inc()
			w.log.Info("recipient suppressed", "tenant", e.Tenant, "msg_id", e.MsgID, "source", e.Source, "reason", e.Reason)
		}
	}
	reportEv := w.event(env, env.ID+".report", events.TypeFeedbackReport, "", env.ID)
	if len(evs) > 0 {
		reportEv.Tenant = evs[0].Tenant
	}
	reportEv.Report = rep
	for _, ev := range append(evs, reportEv) {
		if err := w.bus.PublishEvent(ctx, ev); err != nil {
			return err
		}
	}
	w.Stats.Reports.Inc()
	if f.Class == ClassAutoReply {
		w.Stats.AutoReplies.Inc()
	}
	if rep.Forged {
		w.Stats.Forged.Inc()
	}
	if rep.Attribution == events.AttrNone {
		w.Stats.Unattributed.Inc()
	}
	return w.bus.ReleaseBody(ctx, env)
}

// unparsed keeps a report that could not be parsed on the dead-letter
// stream (a large body stays in the object store, named by the envelope),
// and counts it.
func (w *Worker) unparsed(ctx context.Context, env *envelope.Envelope, h nats.Header, payload []byte, rep *events.Report, perr error) error {
	rep.Class, rep.Error = ClassUnparsed, perr.Error()
	dm := nats.NewMsg(SubjectUnparsed)
	dm.Header = nats.Header{}
	for k, v := range h {
		dm.Header[k] = v
	}
	dm.Header.Set(HeaderUnparsed, perr.Error())
	dm.Data = payload
	pctx, cancel := context.WithTimeout(ctx, w.bus.Config().PublishTimeout)
	defer cancel()
	if _, err := w.bus.JS.PublishMsg(pctx, dm, jetstream.WithMsgID(env.ID+".unparsed")); err != nil {
		return fmt.Errorf("keep unparsed report %s: %w", env.ID, err)
	}
	ev := w.event(env, env.ID+".report", events.TypeFeedbackReport, "", env.ID)
	ev.Report = rep
	if err := w.bus.PublishEvent(ctx, ev); err != nil {
		return err
	}
	w.Stats.Reports.Inc()
	w.Stats.Unparsed.Inc()
	w.log.Warn("report unparsed; kept on the dead-letter stream", "report_id", env.ID, "mailbox", rep.Mailbox, "err", perr)
	return nil
}

func (w *Worker) event(env *envelope.Envelope, id string, t events.Type, tenant, msgID string) *events.Event {
	// The report's received time, the same whenever it is processed, so
	// that a reprocessed report collapses with its first rows.
	return &events.Event{ID: id, Type: t, Time: env.Received.UTC(), Tenant: tenant, MsgID: msgID}
}

// bounces makes one bounce event per failed recipient, and suppression
// entries for the hard ones.
func (w *Worker) bounces(env *envelope.Envelope, f Finding, rep *events.Report) ([]*events.Event, []suppression.Entry) {
	a := w.attribute(env.Rcpts, f.Original, rep)
	var evs []*events.Event
	var entries []suppression.Entry
	for i, b := range f.Bounces {
		// A per-recipient token names the address the tenant sent to, which
		// a forwarder's DSN may not (it names the final mailbox).
		if a.rcpt != "" && len(f.Bounces) == 1 {
			b.Rcpt = a.rcpt
		}
		b.Attribution, b.ReportID = rep.Attribution, env.ID
		ev := w.event(env, fmt.Sprintf("%s.bounce.%d", env.ID, i), events.TypeBounce, a.tenant, a.msgID)
		ev.Bounce = &b
		evs = append(evs, ev)
		if b.Hard && a.tenant != "" && b.Rcpt != "" {
			entries = append(entries, w.entry(env, a, b.Rcpt, b.Reason, suppression.SourceBounce))
		}
	}
	return evs, entries
}

// complaint makes the complaint event, and a suppression entry when the
// complaint asks not to be mailed again.
func (w *Worker) complaint(env *envelope.Envelope, f Finding, rep *events.Report) ([]*events.Event, []suppression.Entry) {
	a := w.attribute(nil, f.Original, rep)
	c := *f.Complaint
	if c.Rcpt == "" {
		c.Rcpt = a.rcpt // redacted by the receiver; the token still knows
	}
	if c.MessageID == "" {
		c.MessageID = f.Original.MessageID
	}
	if c.FeedbackID == "" {
		c.FeedbackID = f.Original.FeedbackID
	}
	c.Attribution, c.ReportID = rep.Attribution, env.ID
	ev := w.event(env, env.ID+".complaint", events.TypeComplaint, a.tenant, a.msgID)
	ev.Complaint = &c
	var entries []suppression.Entry
	if suppresses(c.FeedbackType) && a.tenant != "" && c.Rcpt != "" {
		entries = append(entries, w.entry(env, a, c.Rcpt, c.FeedbackType, suppression.SourceComplaint))
	}
	return []*events.Event{ev}, entries
}

// suppresses reports whether a complaint of feedback type t (RFC 5965 7.3)
// means "do not mail me again": abuse and fraud are spam reports, opt-out
// an unsubscribe. not-spam, virus and auth-failure say nothing about the
// recipient's wishes.
func suppresses(t string) bool {
	switch strings.ToLower(t) {
	case "abuse", "fraud", "opt-out", "opt-out-list", "other":
		return true
	}
	return false
}

func (w *Worker) entry(env *envelope.Envelope, a attribution, rcpt, reason, source string) suppression.Entry {
	e := suppression.Entry{Tenant: a.tenant, Address: rcpt, Reason: reason, Source: source, MsgID: a.msgID, Created: env.Received.UTC()}
	if ttl := w.cfg.Suppression.TTL(source); ttl > 0 {
		e.Expires = e.Created.Add(ttl)
	}
	return e
}

// Run is the feedback role: it waits for the tenant directory, then
// handles reports until ctx ends.
func Run(ctx context.Context, cfg Config, b *bus.Bus, codec *verp.Codec, dir *tenant.Directory, reg *metrics.Registry, log *slog.Logger) error {
	select {
	case <-dir.Ready():
	case <-ctx.Done():
		return nil
	}
	w, err := New(ctx, cfg, b, Deps{Parser: NewParser(), VERP: codec, Tenants: dir, Metrics: reg, Log: log})
	if err != nil {
		return err
	}
	return w.Run(ctx)
}
