package tlspolicy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/delivery"
)

// STS modes (RFC 8461 3.2).
const (
	STSEnforce = "enforce"
	STSTesting = "testing"
	STSNone    = "none"
)

// maxPolicySize bounds a fetched policy body; RFC 8461 3.3 lets a sender
// stop reading after 64 KiB.
const maxPolicySize = 64 << 10

// maxMaxAge is the largest max_age allowed (RFC 8461 3.2: 31557600).
const maxMaxAge = 31557600

// STSPolicy is a parsed MTA-STS policy (RFC 8461 3.2).
type STSPolicy struct {
	Mode   string
	MaxAge time.Duration
	// MX are the allowed MX host patterns ("mx.example.net",
	// "*.example.net").
	MX []string
	// Lines are the policy's lines as fetched, for TLS-RPT's
	// policy-string.
	Lines []string
}

// ParsePolicy parses an MTA-STS policy body (RFC 8461 3.2): "key: value"
// lines ending in CRLF or LF; version STSv1, mode, max_age and (unless the
// mode is none) at least one mx are required; unknown keys are ignored.
func ParsePolicy(body []byte) (*STSPolicy, error) {
	p := &STSPolicy{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 4096), maxPolicySize)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("mta-sts policy: line %q has no colon", line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		p.Lines = append(p.Lines, k+": "+v)
		if k != "mx" && seen[k] {
			continue // RFC 8461 3.2: only the first of a repeated key counts
		}
		seen[k] = true
		switch k {
		case "version":
			if v != "STSv1" {
				return nil, fmt.Errorf("mta-sts policy: version %q, want STSv1", v)
			}
		case "mode":
			if v != STSEnforce && v != STSTesting && v != STSNone {
				return nil, fmt.Errorf("mta-sts policy: mode %q, want enforce, testing or none", v)
			}
			p.Mode = v
		case "max_age":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n > maxMaxAge || len(v) > 10 {
				return nil, fmt.Errorf("mta-sts policy: max_age %q, want 0-%d", v, maxMaxAge)
			}
			p.MaxAge = time.Duration(n) * time.Second
		case "mx":
			pat := strings.ToLower(strings.TrimSuffix(v, "."))
			if !validPattern(pat) {
				return nil, fmt.Errorf("mta-sts policy: mx %q is not a host name or *.domain", v)
			}
			p.MX = append(p.MX, pat)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mta-sts policy: %w", err)
	}
	for _, k := range []string{"version", "mode", "max_age"} {
		if !seen[k] {
			return nil, fmt.Errorf("mta-sts policy: no %s", k)
		}
	}
	if p.Mode != STSNone && len(p.MX) == 0 {
		return nil, fmt.Errorf("mta-sts policy: mode %s without mx", p.Mode)
	}
	return p, nil
}

func validPattern(p string) bool {
	p = strings.TrimPrefix(p, "*.")
	if p == "" || len(p) > 253 {
		return false
	}
	for _, label := range strings.Split(p, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c == '-' || c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || c > 127) {
				return false
			}
		}
	}
	return true
}

// Matches reports whether MX host mx is allowed: equal to a pattern, or
// one label added to the domain of a "*." pattern (RFC 8461 4.1).
func (p *STSPolicy) Matches(mx string) bool {
	mx = strings.ToLower(strings.TrimSuffix(mx, "."))
	for _, pat := range p.MX {
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			label, parent, found := strings.Cut(mx, ".")
			if found && label != "" && parent == rest {
				return true
			}
			continue
		}
		if mx == pat {
			return true
		}
	}
	return false
}

// ParseSTSRecord reads the id of an _mta-sts TXT record (RFC 8461 3.1);
// ok is false when the record is not an STSv1 record.
func ParseSTSRecord(txt string) (id string, ok bool, err error) {
	fields := strings.Split(txt, ";")
	if strings.TrimSpace(fields[0]) != "v=STSv1" {
		return "", false, nil
	}
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		if k != "id" {
			continue
		}
		if v == "" || len(v) > 32 || strings.IndexFunc(v, func(r rune) bool {
			return !('0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z')
		}) >= 0 {
			return "", true, fmt.Errorf("mta-sts record: id %q, want 1-32 letters and digits", v)
		}
		return v, true, nil
	}
	return "", true, errors.New("mta-sts record: no id")
}

// stsEntry is a cached policy, as stored in memory and in the mta-sts KV
// bucket (shared by every sender process).
type stsEntry struct {
	ID      string    `json:"id"`
	Text    string    `json:"policy,omitempty"`
	Fetched time.Time `json:"fetched"`
	Expires time.Time `json:"expires"`

	policy  *STSPolicy // parsed Text; nil for "no policy"
	checked time.Time  // last TXT lookup
}

// BucketMTASTS is the KV bucket of cached MTA-STS policies, by domain.
const BucketMTASTS = "mta-sts"

// stsPolicy returns domain's policy in force, or nil. RFC 8461 3.3 and 5.1:
// a cached policy is used until max_age even when the TXT record or the
// fetch fails; a changed TXT id means a new policy is fetched.
func (p *Policy) stsPolicy(ctx context.Context, domain string) *STSPolicy {
	now := p.now()
	p.mu.Lock()
	e := p.sts[domain]
	p.mu.Unlock()
	if e == nil {
		e = p.loadSTS(ctx, domain)
	}
	valid := e != nil && e.policy != nil && now.Before(e.Expires)
	if e != nil && now.Sub(e.checked) < p.cfg.MTASTS.RecheckTXT && (valid || e.policy == nil) {
		if valid {
			return e.policy
		}
		return nil
	}
	id, err := p.stsID(ctx, domain)
	switch {
	case err != nil || id == "":
		if err != nil {
			p.opts.Log.Debug("mta-sts record lookup failed", "domain", domain, "err", err)
		}
		if valid {
			p.touch(domain, e, now)
			return e.policy
		}
		p.touch(domain, &stsEntry{}, now)
		return nil
	case valid && e.ID == id:
		p.touch(domain, e, now)
		return e.policy
	}
	p.mu.Lock()
	// Another worker may have finished a fetch between our cache read and
	// now; its result stands rather than a second fetch.
	if cur := p.sts[domain]; cur != nil && cur != e {
		if cur.policy == nil {
			p.mu.Unlock()
			return nil
		}
		if cur.ID == id && now.Before(cur.Expires) {
			p.mu.Unlock()
			return cur.policy
		}
	}
	if ch, busy := p.fetching[domain]; busy {
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		p.mu.Lock()
		e := p.sts[domain]
		p.mu.Unlock()
		if e != nil && e.policy != nil && p.now().Before(e.Expires) {
			return e.policy
		}
		return nil
	}
	done := make(chan struct{})
	p.fetching[domain] = done
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.fetching, domain)
		p.mu.Unlock()
		close(done)
	}()
	pol, text, f := p.fetch(ctx, domain)
	if f != nil {
		p.opts.Log.Info("mta-sts policy fetch failed", "domain", domain, "err", f)
		p.publish(ctx, reportInfo{Type: "sts", Domain: domain}, delivery.TLSResult{Domain: domain, Failure: f})
		if valid {
			p.touch(domain, e, now)
			return e.policy
		}
		p.touch(domain, &stsEntry{}, now)
		return nil
	}
	e = &stsEntry{ID: id, Text: text, Fetched: now, Expires: now.Add(pol.MaxAge), policy: pol}
	p.touch(domain, e, now)
	p.storeSTS(ctx, domain, e)
	return pol
}

func (p *Policy) touch(domain string, e *stsEntry, now time.Time) {
	e.checked = now
	p.mu.Lock()
	p.sts[domain] = e
	p.mu.Unlock()
}

// stsID returns the id of domain's _mta-sts record, "" when it has none
// (or more than one, RFC 8461 3.1).
func (p *Policy) stsID(ctx context.Context, domain string) (string, error) {
	txts, err := p.txt.TXT(ctx, "_mta-sts."+domain)
	if err != nil {
		return "", err
	}
	var ids []string
	for _, t := range txts {
		id, ok, err := ParseSTSRecord(t)
		if !ok {
			continue
		}
		if err != nil {
			return "", err
		}
		ids = append(ids, id)
	}
	if len(ids) != 1 {
		return "", nil
	}
	return ids[0], nil
}

// fetch gets https://mta-sts.<domain>/.well-known/mta-sts.txt (RFC 8461
// 3.3): no redirects, 200 only, text/plain, at most 64 KiB, certificate
// valid for mta-sts.<domain>.
func (p *Policy) fetch(ctx context.Context, domain string) (*STSPolicy, string, *delivery.TLSFailure) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.MTASTS.FetchTimeout)
	defer cancel()
	url := "https://mta-sts." + domain + "/.well-known/mta-sts.txt"
	fetchErr := func(err error) *delivery.TLSFailure {
		return &delivery.TLSFailure{Type: delivery.ResultSTSPolicyFetch, Err: fmt.Errorf("fetch %s: %w", url, err)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", fetchErr(err)
	}
	resp, err := p.http.Do(req)
	if err != nil {
		if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
			return nil, "", &delivery.TLSFailure{Type: delivery.ResultSTSWebPKIInvalid, Err: fmt.Errorf("fetch %s: %w", url, err)}
		}
		return nil, "", fetchErr(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fetchErr(fmt.Errorf("HTTP status %d", resp.StatusCode))
	}
	invalid := func(err error) *delivery.TLSFailure {
		return &delivery.TLSFailure{Type: delivery.ResultSTSPolicyInvalid, Err: fmt.Errorf("%s: %w", url, err)}
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return nil, "", invalid(fmt.Errorf("content type %q, want text/plain", resp.Header.Get("Content-Type")))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPolicySize+1))
	if err != nil {
		return nil, "", fetchErr(err)
	}
	if len(body) > maxPolicySize {
		return nil, "", invalid(fmt.Errorf("longer than %d bytes", maxPolicySize))
	}
	pol, err := ParsePolicy(body)
	if err != nil {
		return nil, "", invalid(err)
	}
	return pol, string(body), nil
}

// newHTTPClient returns the policy fetcher's client: it resolves host
// names through our resolver (the same answers delivery sees, and in tests
// the loopback DNS server) and trusts roots.
func (p *Policy) newHTTPClient(roots *x509.CertPool) *http.Client {
	dialer := &net.Dialer{}
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if p.opts.HTTPSPort != 0 {
				port = strconv.Itoa(p.opts.HTTPSPort)
			}
			addrs, err := p.opts.Resolver.Addrs(ctx, host)
			if err != nil {
				return nil, err
			}
			if len(addrs) == 0 {
				return nil, fmt.Errorf("%s has no address", host)
			}
			var errs []error
			for _, a := range addrs {
				c, err := dialer.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
				if err == nil {
					return c, nil
				}
				errs = append(errs, err)
			}
			return nil, errors.Join(errs...)
		},
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: p.cfg.MTASTS.FetchTimeout,
		DisableKeepAlives:   true,
	}
	return &http.Client{
		Transport: tr,
		// RFC 8461 3.3: senders MUST NOT follow redirects.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (p *Policy) loadSTS(ctx context.Context, domain string) *stsEntry {
	if p.kv == nil {
		return nil
	}
	kve, err := p.kv.Get(ctx, domain)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			p.opts.Log.Debug("read cached mta-sts policy", "domain", domain, "err", err)
		}
		return nil
	}
	var e stsEntry
	if err := json.Unmarshal(kve.Value(), &e); err != nil {
		return nil
	}
	pol, err := ParsePolicy([]byte(e.Text))
	if err != nil {
		return nil
	}
	e.policy = pol
	// checked stays zero: the TXT id is looked up before the entry is used.
	return &e
}

func (p *Policy) storeSTS(ctx context.Context, domain string, e *stsEntry) {
	if p.kv == nil {
		return
	}
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	if _, err := p.kv.Put(ctx, domain, b); err != nil {
		p.opts.Log.Warn("store mta-sts policy in the shared cache", "domain", domain, "err", err)
	}
}
