package shaping

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/outflowmail/outflow/pkg/delivery"
	"github.com/outflowmail/outflow/pkg/events"
)

// backoffState is an action in force, the value of a backoff key.
type backoffState struct {
	IP          string    `json:"ip,omitempty"` // empty: every source IP (scope site)
	Site        string    `json:"site"`
	Rule        string    `json:"rule"`
	Kind        string    `json:"kind"`
	Until       time.Time `json:"until"`
	Factor      float64   `json:"factor,omitempty"`
	Connections int       `json:"connections,omitempty"`
	Rate        float64   `json:"rate,omitempty"`
	Reply       string    `json:"reply"`
}

// allIPs stands for every source IP in the key of a scope-site action.
const allIPs = "_all"

func backoffKey(ip, site string) string {
	t := allIPs
	if ip != "" {
		t = IPToken(ip)
	}
	return "backoff." + t + "." + siteToken(site)
}

// states are the actions in force for (src, site): its own and the site's.
func (s *Shaper) states(src, site string, now time.Time) []backoffState {
	s.mu.Lock()
	none := len(s.backoff) == 0
	s.mu.Unlock()
	if none {
		return nil // the usual case: no key to build, nothing to look up
	}
	keys := s.keysOf(src, site)
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []backoffState
	for _, k := range [2]string{keys.own, keys.all} {
		if b, ok := s.backoff[k]; ok && b.Until.After(now) {
			out = append(out, b)
		}
	}
	return out
}

// matches reports whether r matches a reply.
func (r *Rule) matches(code int, enhanced, text string) bool {
	if r.Code != "" {
		c := strconv.Itoa(code)
		if len(c) != 3 {
			return false
		}
		for i := range 3 {
			if r.Code[i] != 'x' && r.Code[i] != c[i] {
				return false
			}
		}
	}
	if r.Enhanced != "" {
		want := strings.Split(r.Enhanced, ".")
		have := strings.Split(enhanced, ".")
		if len(have) < len(want) {
			return false
		}
		for i := range want {
			if want[i] != have[i] {
				return false
			}
		}
	}
	return r.text == nil || r.text.MatchString(text)
}

// Observe matches a reply from site to src against the backoff rules; the
// first match's action is written to the bucket (so every sender process
// obeys it), applied here at once, and published as a shaping event. A
// reply whose action is already in force for at least half its duration
// changes nothing and returns no action, so a burst of identical replies
// costs one write. Success replies match no shipped rule.
func (s *Shaper) Observe(src, site string, code int, enhanced, text string) delivery.Action {
	if code < 400 {
		return delivery.Action{}
	}
	for i := range s.cfg.rules {
		r := &s.cfg.rules[i]
		if r.matches(code, enhanced, text) {
			return s.act(r, src, site, code, enhanced, text)
		}
	}
	return delivery.Action{}
}

func (s *Shaper) act(r *Rule, src, site string, code int, enhanced, text string) delivery.Action {
	now := s.now()
	ip := src
	if r.Scope == ScopeSite {
		ip = ""
	}
	key := backoffKey(ip, site)
	until := now.Add(r.Duration)
	s.mu.Lock()
	cur, ok := s.backoff[key]
	s.mu.Unlock()
	if ok && cur.Rule == r.Name && cur.Until.After(now.Add(r.Duration/2)) {
		return delivery.Action{}
	}
	reply := strings.TrimSpace(strings.Join(strings.Fields(fmt.Sprintf("%d %s %s", code, enhanced, text)), " "))
	b := backoffState{
		IP: ip, Site: site, Rule: r.Name, Kind: r.Action, Until: until,
		Factor: r.Factor, Connections: r.Connections, Rate: r.Rate, Reply: reply,
	}
	s.mu.Lock()
	s.backoff[key] = b
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	value, _ := json.Marshal(b)
	// The key lives a second beyond the action so a reader never sees a
	// stale one; readers also compare Until.
	if err := s.putTTL(ctx, key, value, r.Duration+time.Second); err != nil {
		s.log.Warn("share backoff action; it holds in this process only", "rule", r.Name, "key", key, "err", err)
	}
	s.log.Debug("backoff", "rule", r.Name, "action", r.Action, "source_ip", src, "site", site,
		"until", until.UTC().Format(time.RFC3339), "smtp_code", code, "reply", reply)
	if s.publish != nil {
		e := &events.Event{
			ID:   fmt.Sprintf("shaping.%s.%s.%s.%d", IPToken(src), siteToken(site), r.Name, until.Unix()),
			Type: events.TypeShaping,
			Time: now,
			Shaping: &events.Shaping{
				SourceIP: ip, Site: site, Rule: r.Name, Action: r.Action, Until: until, Reply: reply, Sender: s.sender,
			},
		}
		if err := s.publish(ctx, e); err != nil {
			s.log.Warn("publish shaping event", "rule", r.Name, "err", err)
		}
	}
	return delivery.Action{Rule: r.Name, Kind: r.Action, Duration: r.Duration}
}
