package events

// TypeTLS: the TLS outcome of one outbound SMTP session (or of an MX host
// ruled out by a TLS policy), kept for TLS reporting (RFC 8460): the daily
// aggregate reports are built from these events.
const TypeTLS Type = "tls"

// TLS-RPT policy types (RFC 8460 4.4).
const (
	TLSPolicySTS  = "sts"
	TLSPolicyTLSA = "tlsa"
	TLSPolicyNone = "no-policy-found"
)

// TLS is one TLS session result.
type TLS struct {
	// PolicyDomain is the recipient domain the policy belongs to.
	PolicyDomain string `json:"policy_domain"`
	// PolicyType is sts, tlsa or no-policy-found.
	PolicyType string `json:"policy_type"`
	// PolicyStrings are the policy's text (MTA-STS policy lines, or TLSA
	// records in presentation format).
	PolicyStrings []string `json:"policy_strings,omitempty"`
	// MXPatterns are the mx lines of an MTA-STS policy.
	MXPatterns []string `json:"mx_patterns,omitempty"`
	// Result is "success" or an RFC 8460 4.3 result type
	// (starttls-not-supported, certificate-expired, ...).
	Result string `json:"result"`
	// MX is the receiving MX host name; SendingIP and ReceivingIP the two
	// ends (empty for a host ruled out before connecting).
	MX          string `json:"mx"`
	SendingIP   string `json:"sending_ip,omitempty"`
	ReceivingIP string `json:"receiving_ip,omitempty"`
	// Detail says what failed, for the report's failure-reason-code.
	Detail string `json:"detail,omitempty"`
	// Sender names the sender process.
	Sender string `json:"sender,omitempty"`
}

// TLSSuccess is the Result of a session whose TLS passed every check.
const TLSSuccess = "success"
