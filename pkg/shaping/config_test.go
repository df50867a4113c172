package shaping

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/delivery"
)

func TestSite(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Sites = []SiteRule{{Name: "corp", MX: []string{"mx.corp.example"}}}
	cfg.Domains = map[string]LimitsConfig{"slow.example": {MaxConnections: intp(2)}, "tiny.example": {MaxRcptsPerTxn: intp(5)}}
	k, err := compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &Shaper{cfg: k}
	tests := []struct {
		giveDomain string
		giveMX     []string
		want       string
	}{
		{"gmail.com", []string{"gmail-smtp-in.l.google.com.", "alt1.gmail-smtp-in.l.google.com."}, "google"},
		{"example.org", []string{"ASPMX.L.GOOGLE.COM"}, "google"},
		{"contoso.com", []string{"contoso-com.mail.protection.outlook.com"}, "outlook"},
		{"yahoo.com", []string{"mta5.am0.yahoodns.net", "mta6.am0.yahoodns.net"}, "yahoo"},
		{"aol.com", []string{"mx-aol.mail.gm0.yahoodns.net"}, "yahoo"},
		{"icloud.com", []string{"mx01.mail.icloud.com"}, "icloud"},
		{"web.de", []string{"mx-ha03.web.de"}, "gmx-webde"},
		{"corp.example", []string{"mx.corp.example"}, "corp"},
		// No rule: the MX host set with the first label dropped, sorted.
		{"a.example", []string{"mx2.hosting.example", "mx1.hosting.example"}, "hosting.example"},
		{"b.example", []string{"mx1.hosting.example", "mx.other.example"}, "hosting.example,other.example"},
		{"c.example", []string{"c.example"}, "c.example"},
		{"d.example", []string{"127.0.0.1:2625"}, "127.0.0.1"},
		{"e.example", nil, "e.example"},
		// A domain with its own connection limit is its own site.
		{"slow.example", []string{"mx1.hosting.example"}, "slow.example"},
		{"tiny.example", []string{"mx1.hosting.example"}, "hosting.example"},
	}
	for _, tt := range tests {
		if got := s.Site(tt.giveDomain, tt.giveMX); got != tt.want {
			t.Errorf("Site(%q, %q) = %q, want %q", tt.giveDomain, tt.giveMX, got, tt.want)
		}
	}
}

func TestLimits(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Defaults = LimitsConfig{MaxMessagesPerConn: intp(50)}
	cfg.Sites = []SiteRule{{Name: "google", Limits: LimitsConfig{MaxConnections: intp(20), MessagesPerSecond: floatp(5)}}}
	cfg.Domains = map[string]LimitsConfig{
		"gmail.com":    {MaxRcptsPerTxn: intp(10)},
		"slow.example": {MaxConnections: intp(2), MessagesPerHour: intp(100)},
	}
	k, err := compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &Shaper{cfg: k}
	tests := []struct {
		giveSite, giveDomain string
		want                 delivery.Limits
	}{
		{"other", "x.example", delivery.Limits{MaxConnections: 10, MaxMessagesPerConn: 50, MaxRcptsPerTxn: 100, IdleTimeout: 30 * time.Second}},
		{"google", "example.org", delivery.Limits{MaxConnections: 20, MaxMessagesPerConn: 50, MaxRcptsPerTxn: 100, MessagesPerSecond: 5, IdleTimeout: 30 * time.Second}},
		{"google", "gmail.com", delivery.Limits{MaxConnections: 20, MaxMessagesPerConn: 50, MaxRcptsPerTxn: 10, MessagesPerSecond: 5, IdleTimeout: 30 * time.Second}},
		{"slow.example", "slow.example", delivery.Limits{MaxConnections: 2, MaxMessagesPerConn: 50, MaxRcptsPerTxn: 100, MessagesPerHour: 100, IdleTimeout: 30 * time.Second}},
	}
	for _, tt := range tests {
		if got := s.Limits(tt.giveSite, tt.giveDomain); got != tt.want {
			t.Errorf("Limits(%q, %q) = %+v, want %+v", tt.giveSite, tt.giveDomain, got, tt.want)
		}
	}
}

// TestShippedRules checks that documented replies of the large receivers
// match the rule meant for them, and ordinary replies match none.
func TestShippedRules(t *testing.T) {
	k, err := compile(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		giveCode           int
		giveEnhanced, text string
		want               string
	}{
		{421, "4.7.28", "[192.0.2.1] Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited. - gsmtp", "gmail-ip-rate-limited"},
		{421, "4.7.28", "Gmail has detected an unusual rate of unsolicited mail originating from your DKIM domain. - gsmtp", "gmail-domain-rate-limited"},
		{421, "4.7.0", "[192.0.2.1] Our system has detected an unusual rate of unsolicited mail originating from your IP address. - gsmtp", "gmail-unusual-rate"},
		{421, "4.7.0", "Try again later, closing connection. - gsmtp", "gmail-try-again-later"},
		{550, "5.7.1", "[192.0.2.1] Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been blocked. - gsmtp", "gmail-ip-blocked"},
		{421, "4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1", "yahoo-tss04"},
		{421, "4.7.0", "[TS01] Messages from 192.0.2.1 temporarily deferred due to user complaints", "yahoo-ts01-ts02"},
		{421, "4.7.0", "[TS02] Messages from 192.0.2.1 temporarily deferred", "yahoo-ts01-ts02"},
		{421, "4.7.1", "[TS03] All messages from 192.0.2.1 will be permanently deferred", "yahoo-ts03"},
		{421, "", "[TS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume", "yahoo-tss04"},
		{451, "4.7.650", "The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation.", "outlook-ip-reputation-rate-limited"},
		{421, "4.7.651", "The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation.", "outlook-rate-limited"},
		{451, "4.7.652", "The mail server [192.0.2.1] has exceeded the maximum number of connections.", "outlook-max-connections"},
		{550, "5.7.1", "Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet service provider ... (S3140)", "outlook-s3140"},
		{550, "5.7.606", "Access denied, banned sending IP [192.0.2.1]", "outlook-banned-ip"},
		{554, "5.7.1", "Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org", "dnsbl-blocked-using"},
		{550, "", "192.0.2.1 is listed at b.barracudacentral.org", "dnsbl-listed-at"},
		{421, "4.7.0", "Error: too many connections from 192.0.2.1", "too-many-connections"},
		{421, "", "mwinf5c10 ME Service refuse. Veuillez essayer plus tard. OFR_999", "orange-too-many"},
		{550, "5.7.1", "Service unavailable; client [192.0.2.1] blocked using Orange Reputation; OFR_506", "orange-ofr-blocked"},
		{421, "", "gmx.net (mxgmx017) Nemesis ESMTP Service not available, too many connections", "gmx-webde-too-many-connections"},
		{554, "", "gmx.net (mxgmx114) Nemesis ESMTP Service not available; IP address blocked", "gmx-webde-ip-reputation"},
		{550, "", "spam message rejected. Your IP is in black list", "mailru-blacklisted-ip"},
		{421, "", "Too many messages from your IP, mail.ru ratelimit, try again later", "mailru-ratelimit"},
		{554, "", "resimta-h1p-028482.sys.comcast.net comcast 192.0.2.1 Comcast block for spam. BL000000", "comcast-blocked"},
		{421, "", "resimta comcast 192.0.2.1 rate limited, RL000001", "comcast-rate-limited"},
		{554, "5.7.1", "[CS01] Message rejected due to local policy. Please visit https://support.apple.com/en-us/HT204137", "icloud-blocked"},
		// Not IP trouble: no action.
		{550, "5.1.1", "The email account that you tried to reach does not exist. - gsmtp", ""},
		{450, "4.2.1", "The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered. - gsmtp", ""},
		{452, "4.2.2", "mailbox full", ""},
		{250, "2.0.0", "OK", ""},
	}
	for _, tt := range tests {
		got := ""
		if tt.giveCode >= 400 {
			for i := range k.rules {
				if k.rules[i].matches(tt.giveCode, tt.giveEnhanced, tt.text) {
					got = k.rules[i].Name
					break
				}
			}
		}
		if got != tt.want {
			t.Errorf("reply %d %s %q matched rule %q, want %q", tt.giveCode, tt.giveEnhanced, tt.text, got, tt.want)
		}
	}
}

func TestWarmupValidate(t *testing.T) {
	if err := DefaultWarmup().Validate(); err != nil {
		t.Fatalf("DefaultWarmup().Validate() = %v", err)
	}
	err := WarmupConfig{DailyCaps: []int{10, 0}}.Validate()
	if err == nil || !strings.Contains(err.Error(), "sender.warmup.daily_caps[1]") {
		t.Fatalf("Validate() = %v, want an error naming sender.warmup.daily_caps[1]", err)
	}
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(bad, []byte("backoff:\n  - name: x\n    code: \"4xx\"\n    action: explode\n    duration: 1m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		give    func(*Config)
		wantKey string
	}{
		{"ok", func(*Config) {}, ""},
		{"lease", func(c *Config) { c.ConnLease = time.Second }, "sender.shaping.conn_lease"},
		{"defaults", func(c *Config) { c.Defaults.MaxConnections = intp(0) }, "sender.shaping.defaults.max_connections"},
		{"site name", func(c *Config) { c.Sites = []SiteRule{{Name: "Bad Name"}} }, "sender.shaping.sites[0].name"},
		{"site mx", func(c *Config) { c.Sites = []SiteRule{{Name: "x", MX: []string{"*"}}} }, "sender.shaping.sites[0].mx[0]"},
		{"domain", func(c *Config) { c.Domains = map[string]LimitsConfig{"a.example": {MessagesPerSecond: floatp(-1)}} }, "sender.shaping.domains.a.example.messages_per_second"},
		{"rule regexp", func(c *Config) {
			c.Backoff = []Rule{{Name: "r", Text: "(", Action: "suspend", Duration: time.Minute}}
		}, "sender.shaping.backoff[0].text"},
		{"rule action", func(c *Config) {
			c.Backoff = []Rule{{Name: "r", Code: "421", Action: "pause", Duration: time.Minute}}
		}, "sender.shaping.backoff[0].action"},
		{"rule code", func(c *Config) {
			c.Backoff = []Rule{{Name: "r", Code: "42", Action: "suspend", Duration: time.Minute}}
		}, "sender.shaping.backoff[0].code"},
		{"throttle", func(c *Config) {
			c.Backoff = []Rule{{Name: "r", Code: "421", Action: "throttle", Duration: time.Minute}}
		}, "sender.shaping.backoff[0]"},
		{"remove scope", func(c *Config) {
			c.Backoff = []Rule{{Name: "r", Code: "421", Action: "remove", Scope: "site", Duration: time.Minute}}
		}, "sender.shaping.backoff[0].scope"},
		{"rules file", func(c *Config) { c.RulesFile = bad }, "sender.shaping.rules_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.give(&c)
			err := c.Validate()
			switch {
			case tt.wantKey == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantKey != "" && (err == nil || !strings.Contains(err.Error(), tt.wantKey)):
				t.Fatalf("Validate() = %v, want an error naming %s", err, tt.wantKey)
			}
		})
	}
}

// TestRulesFile: a rules file replaces the shipped rules, its limits and
// durations read as YAML, and a configured rule named like a file rule
// replaces it.
func TestRulesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	text := `sites:
  - name: big
    mx: ["*.big.example"]
    limits: {max_connections: 4, idle_timeout: 5s, messages_per_second: 2.5}
backoff:
  - name: slow-down
    code: "451"
    action: throttle
    rate: 1
    duration: 90s
  - name: go-away
    text: "(?i)go away"
    action: suspend
    duration: 1h
`
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.RulesFile = path
	cfg.Backoff = []Rule{{Name: "go-away", Text: "(?i)go away", Action: KindRemove, Duration: time.Minute}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	k, err := compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &Shaper{cfg: k}
	if got := s.Site("x.example", []string{"mx1.big.example"}); got != "big" {
		t.Errorf("Site = %q, want big", got)
	}
	if got := s.Site("gmail.com", []string{"gmail-smtp-in.l.google.com"}); got != "l.google.com" {
		t.Errorf("Site(gmail) with the shipped rules replaced = %q, want the derived l.google.com", got)
	}
	l := s.Limits("big", "x.example")
	if l.MaxConnections != 4 || l.IdleTimeout != 5*time.Second || l.MessagesPerSecond != 2.5 {
		t.Errorf("Limits(big) = %+v", l)
	}
	var names []string
	for _, r := range k.rules {
		names = append(names, r.Name+":"+r.Action+":"+r.Duration.String())
	}
	if want := "go-away:remove:1m0s slow-down:throttle:1m30s"; strings.Join(names, " ") != want {
		t.Errorf("rules %v, want %s", names, want)
	}
}
