package reputation

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/outflowmail/outflow/pkg/tenant"
)

// Level orders the states: a higher level is a harsher state.
type Level int

// Levels of the states.
const (
	LevelGood Level = iota
	LevelProbation
	LevelThrottled
	LevelSuspended
)

// LevelOf is the level of a state; an unknown state counts as good.
func LevelOf(s tenant.State) Level {
	switch s {
	case tenant.StateProbation:
		return LevelProbation
	case tenant.StateThrottled:
		return LevelThrottled
	case tenant.StateSuspended:
		return LevelSuspended
	}
	return LevelGood
}

// State is the state of a level.
func (l Level) State() tenant.State {
	switch l {
	case LevelProbation:
		return tenant.StateProbation
	case LevelThrottled:
		return tenant.StateThrottled
	case LevelSuspended:
		return tenant.StateSuspended
	}
	return tenant.StateGood
}

// Threshold is one figure's entry points into the three bad states, as
// fractions (0.05 = 5 %) or, for the volume spike, a multiple. A zero entry
// is off. Entries must not decrease from probation to suspended.
type Threshold struct {
	Probation float64 `yaml:"probation"`
	Throttled float64 `yaml:"throttled"`
	Suspended float64 `yaml:"suspended"`
	// Floor is the least denominator (messages, verdicts, recipients,
	// attempts, deliveries) a window needs before this figure decides
	// anything: 1 bounce in 13 sends is no evidence.
	Floor uint64 `yaml:"floor"`
}

// level is the harshest level whose entry value v reaches, each entry
// scaled by scale (1 to enter, Rules.Leave to stay).
func (t Threshold) level(v, scale float64) Level {
	for _, e := range []struct {
		at float64
		l  Level
	}{{t.Suspended, LevelSuspended}, {t.Throttled, LevelThrottled}, {t.Probation, LevelProbation}} {
		if e.at > 0 && v >= e.at*scale {
			return e.l
		}
	}
	return LevelGood
}

func (t Threshold) validate(key string) error {
	prev := 0.0
	for _, e := range []struct {
		name string
		v    float64
	}{{"probation", t.Probation}, {"throttled", t.Throttled}, {"suspended", t.Suspended}} {
		switch {
		case e.v < 0:
			return fmt.Errorf("%s.%s: %v is negative", key, e.name, e.v)
		case e.v > 0 && e.v < prev:
			return fmt.Errorf("%s.%s: %v is below a milder state's threshold %v", key, e.name, e.v, prev)
		case e.v > 0:
			prev = e.v
		}
	}
	return nil
}

// Rules are the reputation loop's thresholds (analytics.reputation.rules).
type Rules struct {
	// SpamRatio is the share of a tenant's messages the classifier called
	// spam or malicious; Floor counts verdicts.
	SpamRatio Threshold `yaml:"spam_ratio"`
	// HardBounceRate is hard bounces per recipient with a final outcome;
	// Floor counts those recipients.
	HardBounceRate Threshold `yaml:"hard_bounce_rate"`
	// ComplaintRate is complaints per delivered recipient; Floor counts
	// deliveries.
	ComplaintRate Threshold `yaml:"complaint_rate"`
	// BlockRate is attempts refused naming a blocklist or the sender's
	// reputation per attempt; Floor counts attempts.
	BlockRate Threshold `yaml:"block_rate"`
	// VolumeSpike is the window's hourly volume over the tenant's own
	// hourly baseline; Floor counts messages. It applies only once the
	// tenant has BaselineHours of history.
	VolumeSpike   Threshold `yaml:"volume_spike"`
	BaselineHours uint64    `yaml:"baseline_hours"`
	// Leave is hysteresis: a tenant leaves a state only when every figure
	// is below Leave times the threshold that would put it there (0.5: a
	// tenant entering probation at 5 % bounces leaves below 2.5 %).
	Leave float64 `yaml:"leave"`
	// CoolDown is the least time in a state before the loop moves a tenant
	// to a milder one; harsher moves are immediate.
	CoolDown time.Duration `yaml:"cool_down"`
}

// DefaultRules are derived from the anchors in docs/analytics.md ("States
// and rules"): SES (review at 5 % bounces / 0.1 % complaints, pause at 10 %
// / 0.5 %), Gmail (user-reported spam under 0.1 %, never 0.3 %) and
// Momentum Adaptive Delivery (throttle at 5 %, suspend at 10 %, from 2,000
// attempts an hour).
func DefaultRules() Rules {
	return Rules{
		SpamRatio:      Threshold{Probation: 0.10, Throttled: 0.20, Suspended: 0.40, Floor: 200},
		HardBounceRate: Threshold{Probation: 0.05, Suspended: 0.10, Floor: 200},
		ComplaintRate:  Threshold{Probation: 0.001, Throttled: 0.003, Suspended: 0.005, Floor: 2000},
		BlockRate:      Threshold{Throttled: 0.05, Suspended: 0.10, Floor: 2000},
		VolumeSpike:    Threshold{Probation: 10, Floor: 500},
		BaselineHours:  24,
		Leave:          0.5,
		CoolDown:       time.Hour,
	}
}

// Validate names the first bad key under prefix (analytics.reputation.rules).
func (r Rules) Validate(prefix string) error {
	for _, t := range []struct {
		key string
		t   Threshold
	}{{"spam_ratio", r.SpamRatio}, {"hard_bounce_rate", r.HardBounceRate}, {"complaint_rate", r.ComplaintRate},
		{"block_rate", r.BlockRate}, {"volume_spike", r.VolumeSpike}} {
		if err := t.t.validate(prefix + "." + t.key); err != nil {
			return err
		}
	}
	for _, t := range []struct {
		key string
		v   float64
	}{{"spam_ratio", r.SpamRatio.Suspended}, {"hard_bounce_rate", r.HardBounceRate.Suspended},
		{"complaint_rate", r.ComplaintRate.Suspended}, {"block_rate", r.BlockRate.Suspended}} {
		if t.v > 1 {
			return fmt.Errorf("%s.%s: %v is above 1 (a rate is a fraction: 0.05 = 5 %%)", prefix, t.key, t.v)
		}
	}
	if r.Leave <= 0 || r.Leave > 1 {
		return fmt.Errorf("%s.leave: %v is outside (0, 1]", prefix, r.Leave)
	}
	if r.CoolDown < 0 {
		return errors.New(prefix + ".cool_down: must not be negative")
	}
	return nil
}

// Finding is one rule that a window's figures trip.
type Finding struct {
	Rule   string
	Window time.Duration
	Value  float64
	Level  Level
}

func (f Finding) String() string {
	if f.Rule == "volume_spike" {
		return fmt.Sprintf("%s %.1f× over %v", f.Rule, f.Value, f.Window)
	}
	return fmt.Sprintf("%s %.2f%% over %v", f.Rule, 100*f.Value, f.Window)
}

// findings are the rules each window's figures reach at scale (1: enter,
// Leave: stay), where the window has the rule's floor.
func (r Rules) findings(figs []TenantFigures, scale float64) []Finding {
	var out []Finding
	for _, f := range figs {
		add := func(rule string, t Threshold, v float64, n uint64) {
			if n < max(t.Floor, 1) {
				return
			}
			if l := t.level(v, scale); l > LevelGood {
				out = append(out, Finding{Rule: rule, Window: f.Window, Value: v, Level: l})
			}
		}
		add("spam_ratio", r.SpamRatio, f.SpamRatio, f.Verdicts)
		add("hard_bounce_rate", r.HardBounceRate, f.HardBounceRate, f.Delivered+f.Bounced+f.Expired)
		add("complaint_rate", r.ComplaintRate, f.ComplaintRate, f.Delivered)
		add("block_rate", r.BlockRate, f.BlockRate, f.Attempts)
		if f.BaselineHours >= r.BaselineHours && f.BaselineHours > 0 {
			add("volume_spike", r.VolumeSpike, f.VolumeVsBaseline, f.Messages)
		}
	}
	// Harshest first; among equals the shortest window (the freshest
	// evidence), then rule name, so that the reason is deterministic.
	slices.SortStableFunc(out, func(a, b Finding) int {
		switch {
		case a.Level != b.Level:
			return int(b.Level - a.Level)
		case a.Window != b.Window:
			return int((a.Window - b.Window) / time.Second)
		}
		return strings.Compare(a.Rule, b.Rule)
	})
	return out
}

// Decision is what the loop does with one tenant.
type Decision struct {
	// Change is false when the tenant stays where it is.
	Change bool
	From   tenant.State
	To     tenant.State
	// Rule names the finding that caused the change ("recovered" for a
	// move to a milder state, "" without a change).
	Rule   string
	Reason string
	// Window is the window of the deciding finding (0 on recovery).
	Window time.Duration
}

// Decide evaluates one tenant: cur is its policy, figs its figures (one per
// window, any order), now the time of the evaluation. It is pure: the loop
// stores what it returns.
//
//   - A pinned policy never changes.
//   - A finding harsher than the current state moves the tenant there at
//     once, whatever the cool-down.
//   - The tenant moves to a milder state only after CoolDown in the current
//     one, and only as far down as the figures allow with hysteresis: the
//     new state is the harshest any figure still reaches at Leave times the
//     thresholds (so a tenant at 4 % bounces, having entered probation at
//     5 %, stays on probation until it is below 2.5 %).
func (r Rules) Decide(cur tenant.Policy, figs []TenantFigures, now time.Time) Decision {
	from := cur.State
	if from == "" {
		from = tenant.StateGood
	}
	d := Decision{From: from, To: from}
	if cur.Pinned {
		return d
	}
	level := LevelOf(from)
	if enter := r.findings(figs, 1); len(enter) > 0 && enter[0].Level > level {
		f := enter[0]
		d.Change, d.To, d.Rule, d.Window = true, f.Level.State(), f.Rule, f.Window
		d.Reason = f.String()
		return d
	}
	if level == LevelGood || now.Sub(cur.Since) < r.CoolDown {
		return d
	}
	stay := LevelGood
	if held := r.findings(figs, r.Leave); len(held) > 0 {
		stay = held[0].Level
	}
	if stay >= level {
		return d
	}
	d.Change, d.To, d.Rule = true, stay.State(), "recovered"
	d.Reason = fmt.Sprintf("figures below %.0f%% of the %s thresholds for %v", 100*r.Leave, from, r.CoolDown)
	return d
}

// FigureMap flattens the figures of every window into the named values
// kept with a policy (tenant.Policy.Figures) and a policy_changes row: keys
// are "<figure>_<window>", e.g. "hard_bounce_rate_15m0s".
func FigureMap(figs []TenantFigures) map[string]float64 {
	out := map[string]float64{}
	for _, f := range figs {
		w := "_" + f.Window.String()
		out["messages"+w] = float64(f.Messages)
		out["verdicts"+w] = float64(f.Verdicts)
		out["spam_ratio"+w] = f.SpamRatio
		out["delivered"+w] = float64(f.Delivered)
		out["hard_bounces"+w] = float64(f.HardBounces)
		out["hard_bounce_rate"+w] = f.HardBounceRate
		out["complaints"+w] = float64(f.Complaints)
		out["complaint_rate"+w] = f.ComplaintRate
		out["attempts"+w] = float64(f.Attempts)
		out["block_rate"+w] = f.BlockRate
		out["volume_vs_baseline"+w] = f.VolumeVsBaseline
		out["top_fingerprint_share"+w] = f.TopFingerprintShare
	}
	return out
}
