// Package reputation is the reputation loop's side of the analytics role:
// per-tenant abuse figures read from ClickHouse's per-minute rollups
// (figures.go), and the rules that move tenants between states.
package reputation

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Querier runs a query; a chstore connection (driver.Conn) is one.
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
}

var _ Querier = (driver.Conn)(nil)

// Baseline is the history a tenant's usual hourly volume is taken from.
const Baseline = 7 * 24 * time.Hour

// TenantFigures are one tenant's figures over one window ending at now.
// Windows have minute resolution: they cover every rollup minute from the
// one holding now-Window to the one holding now.
type TenantFigures struct {
	Tenant string
	Window time.Duration

	// Counts in the window (the rollup columns, docs/analytics.md).
	Messages    uint64 // routed messages: the volume
	Rcpts       uint64
	Verdicts    uint64
	Suspect     uint64
	Spam        uint64 // verdicts labelled spam or malicious
	Attempts    uint64 // recipient delivery attempts
	Delivered   uint64
	Deferred    uint64
	Bounced     uint64
	Expired     uint64
	HardBounces uint64
	SoftBounces uint64
	Blocked     uint64
	Complaints  uint64
	Suppressed  uint64

	// SpamRatio is Spam / Verdicts.
	SpamRatio float64
	// HardBounceRate is HardBounces / (Delivered + Bounced + Expired): per
	// recipient that reached a final outcome, as SES counts it.
	HardBounceRate float64
	// ComplaintRate is Complaints / Delivered.
	ComplaintRate float64
	// BlockRate is Blocked / Attempts: of all attempts, the share refused
	// naming a blocklist or the sender's reputation.
	BlockRate float64

	// BaselineHourly is the median of the tenant's hourly message volumes
	// over the Baseline before the current hour, counting only hours in
	// which it sent (so that a tenant sending in office hours is compared
	// with its office hours); BaselineHours is how many hours those were.
	BaselineHourly float64
	BaselineHours  uint64
	// VolumeVsBaseline is the window's volume per hour over BaselineHourly;
	// 0 when there is no baseline yet (a new tenant).
	VolumeVsBaseline float64

	// TopFingerprintShare is the share of the window's fingerprinted
	// verdicts that carry its most common content fingerprint: near 1 when
	// a tenant sends one identical message to everybody.
	TopFingerprintShare float64
	// Fingerprints is the number of distinct contents in the window.
	Fingerprints uint64
}

// Figures computes, for each tenant (all tenants with mail in the longest
// window when tenants is empty), its figures over each window ending at now.
// The result maps a tenant to one entry per window, in the order of windows;
// a tenant without mail in any window is absent. It runs one query per
// window and one for the baselines, whatever the number of tenants.
func Figures(ctx context.Context, q Querier, tenants []string, now time.Time, windows []time.Duration) (map[string][]TenantFigures, error) {
	for _, w := range windows {
		if w < time.Minute {
			return nil, fmt.Errorf("reputation figures: window %v is shorter than the rollups' minute", w)
		}
	}
	base, err := baselines(ctx, q, tenants, now)
	if err != nil {
		return nil, err
	}
	out := map[string][]TenantFigures{}
	for i, w := range windows {
		rows, err := windowFigures(ctx, q, tenants, now, w)
		if err != nil {
			return nil, err
		}
		for _, f := range rows {
			fs, ok := out[f.Tenant]
			if !ok {
				fs = make([]TenantFigures, len(windows))
				for j := range fs {
					fs[j] = TenantFigures{Tenant: f.Tenant, Window: windows[j]}
				}
				out[f.Tenant] = fs
			}
			fs[i] = f
		}
	}
	for tenant, fs := range out {
		b := base[tenant]
		for j := range fs {
			f := &fs[j]
			f.BaselineHourly, f.BaselineHours = b.hourly, b.hours
			if b.hourly > 0 {
				f.VolumeVsBaseline = float64(f.Messages) / f.Window.Hours() / b.hourly
			}
		}
	}
	return out, nil
}

// windowQuery joins, per tenant, the window's sums and its fingerprint
// spread (18.16 joins one table per SELECT). %[1]s is the tenant filter,
// empty for all tenants.
const windowQuery = `
SELECT tenant, messages, rcpts, verdicts, suspect, spam, attempts, delivered, deferred, bounced, expired,
       hard_bounces, soft_bounces, blocked, complaints, suppressed, fp_top, fp_total, fp_distinct
FROM
(
    SELECT tenant,
           sum(messages) AS messages, sum(rcpts) AS rcpts, sum(verdicts) AS verdicts,
           sum(suspect) AS suspect, sum(spam) + sum(malicious) AS spam,
           sum(attempts) AS attempts, sum(delivered) AS delivered, sum(deferred) AS deferred,
           sum(bounced) AS bounced, sum(expired) AS expired, sum(hard_bounces) AS hard_bounces,
           sum(soft_bounces) AS soft_bounces, sum(blocked) AS blocked,
           sum(complaints) AS complaints, sum(suppressed) AS suppressed
    FROM tenant_minute
    WHERE minute >= toDateTime(?) AND minute <= toDateTime(?) %[1]s
    GROUP BY tenant
)
ANY LEFT JOIN
(
    SELECT tenant, max(n) AS fp_top, sum(n) AS fp_total, count() AS fp_distinct
    FROM
    (
        SELECT tenant, fingerprint, sum(messages) AS n
        FROM tenant_minute_fingerprints
        WHERE minute >= toDateTime(?) AND minute <= toDateTime(?) %[1]s
        GROUP BY tenant, fingerprint
    )
    GROUP BY tenant
) USING tenant
WHERE messages + verdicts + attempts + complaints + suppressed > 0
ORDER BY tenant`

// baselineQuery is each tenant's median hourly volume over the hours in
// which it sent, from the hourly rollup.
const baselineQuery = `
SELECT tenant, median(hourly), count()
FROM
(
    SELECT tenant, hour, sum(messages) AS hourly
    FROM tenant_hour
    WHERE hour >= toDateTime(?) AND hour < toDateTime(?) %[1]s
    GROUP BY tenant, hour
    HAVING hourly > 0
)
GROUP BY tenant`

// baseline is a tenant's usual hourly volume.
type baseline struct {
	hourly float64
	hours  uint64
}

// tenantFilter is the WHERE clause part and its argument restricting a
// query to tenants; nothing for all tenants.
func tenantFilter(tenants []string) (string, []any) {
	if len(tenants) == 0 {
		return "", nil
	}
	return "AND tenant IN ?", []any{clickhouse.GroupSet{Value: anySlice(tenants)}}
}

func baselines(ctx context.Context, q Querier, tenants []string, now time.Time) (map[string]baseline, error) {
	hour := now.Truncate(time.Hour)
	filter, set := tenantFilter(tenants)
	rows, err := q.Query(ctx, fmt.Sprintf(baselineQuery, filter),
		append([]any{unix(hour.Add(-Baseline)), unix(hour)}, set...)...)
	if err != nil {
		return nil, fmt.Errorf("reputation baselines: %w", err)
	}
	defer rows.Close()
	out := map[string]baseline{}
	for rows.Next() {
		var tenant string
		var b baseline
		if err := rows.Scan(&tenant, &b.hourly, &b.hours); err != nil {
			return nil, fmt.Errorf("reputation baselines: %w", err)
		}
		out[tenant] = b
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reputation baselines: %w", err)
	}
	return out, nil
}

func windowFigures(ctx context.Context, q Querier, tenants []string, now time.Time, w time.Duration) ([]TenantFigures, error) {
	from, to := unix(now.Add(-w).Truncate(time.Minute)), unix(now)
	filter, set := tenantFilter(tenants)
	args := append(append([]any{from, to}, set...), from, to)
	args = append(args, set...)
	rows, err := q.Query(ctx, fmt.Sprintf(windowQuery, filter), args...)
	if err != nil {
		return nil, fmt.Errorf("reputation figures over %v: %w", w, err)
	}
	defer rows.Close()
	var out []TenantFigures
	for rows.Next() {
		f := TenantFigures{Window: w}
		var fpTop, fpTotal, fpDistinct uint64
		if err := rows.Scan(&f.Tenant, &f.Messages, &f.Rcpts, &f.Verdicts, &f.Suspect, &f.Spam, &f.Attempts,
			&f.Delivered, &f.Deferred, &f.Bounced, &f.Expired, &f.HardBounces, &f.SoftBounces, &f.Blocked,
			&f.Complaints, &f.Suppressed, &fpTop, &fpTotal, &fpDistinct); err != nil {
			return nil, fmt.Errorf("reputation figures over %v: %w", w, err)
		}
		f.Fingerprints = fpDistinct
		f.SpamRatio = ratio(f.Spam, f.Verdicts)
		f.HardBounceRate = ratio(f.HardBounces, f.Delivered+f.Bounced+f.Expired)
		f.ComplaintRate = ratio(f.Complaints, f.Delivered)
		f.BlockRate = ratio(f.Blocked, f.Attempts)
		f.TopFingerprintShare = ratio(fpTop, fpTotal)
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reputation figures over %v: %w", w, err)
	}
	return out, nil
}

// String renders the figures for logs and `outflow ctl tenant show`.
func (f TenantFigures) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s over %v: %d messages, spam %.2f%% (%d/%d), hard bounces %.2f%%, complaints %.3f%%, blocked %.2f%%",
		f.Tenant, f.Window, f.Messages, 100*f.SpamRatio, f.Spam, f.Verdicts, 100*f.HardBounceRate,
		100*f.ComplaintRate, 100*f.BlockRate)
	if f.BaselineHours > 0 {
		fmt.Fprintf(&b, ", volume %.1f× baseline (%.0f/h over %d h)", f.VolumeVsBaseline, f.BaselineHourly, f.BaselineHours)
	} else {
		b.WriteString(", no baseline yet")
	}
	fmt.Fprintf(&b, ", top content %.0f%% of %d distinct", 100*f.TopFingerprintShare, f.Fingerprints)
	return b.String()
}

func ratio(n, d uint64) float64 {
	if d == 0 {
		return 0
	}
	return float64(n) / float64(d)
}

// unix is t as a DateTime argument: whole seconds, no time zone to get
// wrong between client and server.
func unix(t time.Time) uint32 { return uint32(max(t.Unix(), 0)) }

func anySlice(ss []string) []any {
	out := make([]any, 0, len(ss))
	for _, s := range slices.Compact(slices.Sorted(slices.Values(ss))) {
		out = append(out, s)
	}
	return out
}
