// Package feedbackid writes and reads the Feedback-ID header the sender puts
// on every message (Gmail's feedback-loop format,
// campaign:tenant:pool:provider). The sender formats it; the feedback worker
// and `outflow complaint parse` read the tenant back out of the copy a
// complaint quotes. Keeping both here keeps them in step.
package feedbackid

import "strings"

// Header is the header field's name, spelled as receivers document it.
const Header = "Feedback-ID"

// Format returns the header value. Gmail's Feedback-ID has up to four
// colon-separated fields, the last one the sender's constant id; each field
// here is reduced to [A-Za-z0-9._-] (at most 64), so a campaign id cannot
// add fields or inject header syntax. No campaign reads "none".
func Format(campaign, tenant, poolName, providerID string) string {
	return field(campaign) + ":" + field(tenant) + ":" + field(poolName) + ":" + providerID
}

func field(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return -1
	}, strings.TrimSpace(s))
	if len(s) > 64 {
		s = s[:64]
	}
	if s == "" {
		return "none"
	}
	return s
}

// Tenant returns the tenant field of a Feedback-ID value
// (campaign:tenant:pool:provider, or campaign:tenant:provider), or "" when
// the value has fewer than three fields. It is what the header says, not a
// verified tenant: callers check it against the tenant directory.
func Tenant(value string) string {
	parts := strings.Split(strings.TrimSpace(value), ":")
	if len(parts) < 3 {
		return ""
	}
	return parts[1]
}
