package events

import "time"

// Event types of traffic shaping and blocklist monitoring.
const (
	// TypeShaping: a backoff rule acted on a reply from a destination site
	// (suspended, throttled or removed a source IP there).
	TypeShaping Type = "shaping"
	// TypeDNSBL: a source IP was found listed on, or delisted from, a DNS
	// blocklist it is monitored in.
	TypeDNSBL Type = "dnsbl"
)

// Shaping is a backoff action taken by the sender on a remote reply.
type Shaping struct {
	// SourceIP is the address acted on; empty when the action covers every
	// source IP toward the site (scope site).
	SourceIP string `json:"source_ip,omitempty"`
	Site     string `json:"site"`
	// Rule is the name of the backoff rule that matched.
	Rule string `json:"rule"`
	// Action is suspend, throttle or remove.
	Action string    `json:"action"`
	Until  time.Time `json:"until"`
	// Reply is the remote reply that triggered the rule
	// ("421 4.7.28 ...").
	Reply string `json:"reply"`
	// Sender names the sender process that saw the reply.
	Sender string `json:"sender,omitempty"`
}

// DNSBL is a change of a source IP's listing in one DNS blocklist zone.
type DNSBL struct {
	IP   string `json:"ip"`
	Zone string `json:"zone"`
	// Listed is true when the IP was found listed, false when it was
	// delisted.
	Listed bool `json:"listed"`
	// Answer is the A record the zone answered (127.0.0.x: the list's
	// reason code), Reason its TXT record, when listed.
	Answer string `json:"answer,omitempty"`
	Reason string `json:"reason,omitempty"`
}
