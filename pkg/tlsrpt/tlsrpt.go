// Package tlsrpt builds SMTP TLS reports (RFC 8460) from the tls events the
// sender records for every outbound TLS session (pkg/tlspolicy): it reads
// one day of them from the events stream, aggregates them per policy
// domain and policy into the RFC's JSON report, and finds the domains that
// ask for reports with a _smtp._tls TXT record. `outflow ctl tlsrpt
// report` writes the files; sending them to the rua addresses is not done
// yet.
package tlsrpt

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/resolver"
)

// Report is an aggregate report (RFC 8460 4.4).
type Report struct {
	OrganizationName string         `json:"organization-name"`
	DateRange        DateRange      `json:"date-range"`
	ContactInfo      string         `json:"contact-info"`
	ReportID         string         `json:"report-id"`
	Policies         []PolicyResult `json:"policies"`
}

// DateRange is the report's period (RFC 8460 4.4: date-time of RFC 3339).
type DateRange struct {
	Start time.Time `json:"start-datetime"`
	End   time.Time `json:"end-datetime"`
}

// PolicyResult is the sessions under one policy.
type PolicyResult struct {
	Policy         Policy          `json:"policy"`
	Summary        Summary         `json:"summary"`
	FailureDetails []FailureDetail `json:"failure-details,omitempty"`
}

// Policy describes the policy applied (RFC 8460 4.4 "policy").
type Policy struct {
	// Type is sts, tlsa or no-policy-found.
	Type    string   `json:"policy-type"`
	Strings []string `json:"policy-string,omitempty"`
	Domain  string   `json:"policy-domain"`
	MXHost  []string `json:"mx-host,omitempty"`
}

// Summary counts the sessions.
type Summary struct {
	Successful int `json:"total-successful-session-count"`
	Failed     int `json:"total-failure-session-count"`
}

// FailureDetail counts failed sessions of one kind (RFC 8460 4.4).
type FailureDetail struct {
	ResultType          string `json:"result-type"`
	SendingMTAIP        string `json:"sending-mta-ip,omitempty"`
	ReceivingMXHostname string `json:"receiving-mx-hostname,omitempty"`
	ReceivingIP         string `json:"receiving-ip,omitempty"`
	FailedSessionCount  int    `json:"failed-session-count"`
	FailureReasonCode   string `json:"failure-reason-code,omitempty"`
}

// Org is who sends the reports.
type Org struct {
	Name, Contact string
	// Domain is the sending domain in report file names (RFC 8460 5.3).
	Domain string
}

// maxReason bounds a failure-reason-code: the detail of an error can be
// long, and reports are read by people.
const maxReason = 200

// Build aggregates one day's results (from Collect) into one report per
// policy domain.
func Build(org Org, day time.Time, results []events.TLS) map[string]*Report {
	start := dayStart(day)
	type detailKey struct{ result, sip, mx, rip, reason string }
	type acc struct {
		pr      PolicyResult
		details map[detailKey]int
	}
	byDomain := map[string]map[string]*acc{}
	for _, r := range results {
		if r.PolicyDomain == "" {
			continue
		}
		pol := Policy{Type: r.PolicyType, Strings: r.PolicyStrings, Domain: r.PolicyDomain, MXHost: r.MXPatterns}
		pk := pol.Type + "\x00" + strings.Join(pol.Strings, "\n") + "\x00" + strings.Join(pol.MXHost, "\n")
		pols := byDomain[r.PolicyDomain]
		if pols == nil {
			pols = map[string]*acc{}
			byDomain[r.PolicyDomain] = pols
		}
		a := pols[pk]
		if a == nil {
			a = &acc{pr: PolicyResult{Policy: pol}, details: map[detailKey]int{}}
			pols[pk] = a
		}
		if r.Result == events.TLSSuccess {
			a.pr.Summary.Successful++
			continue
		}
		a.pr.Summary.Failed++
		reason := r.Detail
		if len(reason) > maxReason {
			reason = reason[:maxReason]
		}
		a.details[detailKey{r.Result, r.SendingIP, r.MX, r.ReceivingIP, reason}]++
	}
	out := map[string]*Report{}
	for domain, pols := range byDomain {
		rep := &Report{
			OrganizationName: org.Name, ContactInfo: org.Contact,
			DateRange: DateRange{Start: start, End: start.Add(24*time.Hour - time.Second)},
			ReportID:  reportID(org, domain, start),
		}
		for _, pk := range slices.Sorted(maps.Keys(pols)) {
			a := pols[pk]
			for k, n := range a.details {
				a.pr.FailureDetails = append(a.pr.FailureDetails, FailureDetail{
					ResultType: k.result, SendingMTAIP: k.sip, ReceivingMXHostname: k.mx, ReceivingIP: k.rip,
					FailedSessionCount: n, FailureReasonCode: k.reason,
				})
			}
			slices.SortFunc(a.pr.FailureDetails, func(x, y FailureDetail) int {
				return cmp.Or(cmp.Compare(x.ResultType, y.ResultType), cmp.Compare(x.ReceivingMXHostname, y.ReceivingMXHostname),
					cmp.Compare(x.SendingMTAIP, y.SendingMTAIP), cmp.Compare(x.ReceivingIP, y.ReceivingIP),
					cmp.Compare(x.FailureReasonCode, y.FailureReasonCode))
			})
			rep.Policies = append(rep.Policies, a.pr)
		}
		out[domain] = rep
	}
	return out
}

// reportID is unique per (organization, domain, day) and the same when a
// day's report is built again.
func reportID(org Org, domain string, start time.Time) string {
	h := sha256.Sum256([]byte(org.Name + "\x00" + org.Domain + "\x00" + domain + "\x00" + start.Format(time.DateOnly)))
	return start.Format(time.DateOnly) + "_" + domain + "_" + hex.EncodeToString(h[:8])
}

// FileName is the report's file name (RFC 8460 5.3):
// sender!policy-domain!begin!end!unique-id.json, timestamps in Unix seconds.
func FileName(org Org, domain string, r *Report) string {
	sender := cmp.Or(org.Domain, "outflow")
	return fmt.Sprintf("%s!%s!%d!%d!%s.json", sender, domain, r.DateRange.Start.Unix(), r.DateRange.End.Unix(), r.ReportID[len(r.ReportID)-16:])
}

func dayStart(day time.Time) time.Time {
	y, m, d := day.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// Record is a domain's TLS-RPT record (RFC 8460 3).
type Record struct {
	// RUA are the report destinations (mailto: or https: URIs).
	RUA []string
}

// ParseRecord parses a _smtp._tls TXT record: "v=TLSRPTv1; rua=URI[,URI]".
// ok is false when the text is not a TLSRPTv1 record.
func ParseRecord(txt string) (rec Record, ok bool, err error) {
	fields := strings.Split(txt, ";")
	if strings.TrimSpace(fields[0]) != "v=TLSRPTv1" {
		return Record{}, false, nil
	}
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		if k != "rua" {
			continue
		}
		for _, u := range strings.Split(v, ",") {
			u = strings.TrimSpace(u)
			if !strings.HasPrefix(u, "mailto:") && !strings.HasPrefix(u, "https:") {
				return Record{}, true, fmt.Errorf("tls-rpt record: rua %q is neither mailto: nor https:", u)
			}
			rec.RUA = append(rec.RUA, u)
		}
	}
	if len(rec.RUA) == 0 {
		return Record{}, true, errors.New("tls-rpt record: no rua")
	}
	return rec, true, nil
}

// TXTResolver looks up TXT records; *resolver.Resolver is one.
type TXTResolver interface {
	TXT(ctx context.Context, name string) ([]string, error)
}

// Lookup returns domain's TLS-RPT record; ok is false when it publishes
// none (RFC 8460 3: exactly one record is expected; more are ignored).
func Lookup(ctx context.Context, r TXTResolver, domain string) (Record, bool, error) {
	txts, err := r.TXT(ctx, "_smtp._tls."+domain)
	if errors.Is(err, resolver.ErrNXDomain) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, err
	}
	var found []Record
	for _, t := range txts {
		rec, ok, err := ParseRecord(t)
		if !ok {
			continue
		}
		if err != nil {
			return Record{}, false, err
		}
		found = append(found, rec)
	}
	if len(found) != 1 {
		return Record{}, false, nil
	}
	return found[0], true, nil
}

// Collect reads the tls events of one UTC day from the events stream
// (which keeps them for its retention, 7 days).
func Collect(ctx context.Context, js jetstream.JetStream, stream string, day time.Time) ([]events.TLS, error) {
	start := dayStart(day)
	end := start.Add(24 * time.Hour)
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.Subject + "." + string(events.TypeTLS)},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &start,
	})
	if err != nil {
		return nil, fmt.Errorf("read tls events: %w", err)
	}
	var out []events.TLS
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("read tls events: %w", err)
		}
		if info.NumPending == 0 {
			return out, nil
		}
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, fmt.Errorf("read tls events: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err == nil && !md.Timestamp.Before(end) {
				return out, nil // stored after the day: the rest is too
			}
			evs, _ := events.UnmarshalAll(m.Data())
			for _, e := range evs {
				if e.TLS == nil || e.Time.Before(start) || !e.Time.Before(end) {
					continue
				}
				out = append(out, *e.TLS)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("read tls events: %w", err)
		}
		if n == 0 {
			return out, nil
		}
	}
}
