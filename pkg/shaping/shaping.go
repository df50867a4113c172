// Package shaping is the sender's traffic shaping: it names the destination
// site of each recipient domain from its MX hosts (as KumoMTA does), holds
// the limits per (source IP, site) — concurrent connections, messages per
// second and per hour — across every sender process through the NATS KV
// bucket "shaping", applies response-based backoff rules (suspend,
// throttle, or take a source IP out of rotation for a site, when a
// receiver's reply says so), caps new source IPs per site and day while they
// warm up, and leaves out IPs that pkg/dnsbl found listed. It implements
// delivery.Shaper; pkg/delivery calls it on every connection and message.
package shaping

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/delivery"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/pool"
)

// Options configure a Shaper.
type Options struct {
	Config Config
	// Warmup is sender.warmup; zero is DefaultWarmup.
	Warmup WarmupConfig
	// JS is the JetStream handle of the bus; the Shaper declares the
	// "shaping" bucket with it.
	JS jetstream.JetStream
	// Replicas of the bucket (nats.replicas).
	Replicas int
	// Pools are the configured pools; their addresses' warm-up start dates
	// are read from them.
	Pools pool.Set
	// Publish sends an event (bus.PublishEvent); nil publishes none.
	Publish func(context.Context, *events.Event) error
	// Sender names this process in events and slot values (host:pid).
	Sender string
	Log    *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Shaper implements delivery.Shaper over the shared "shaping" bucket.
type Shaper struct {
	cfg     *compiled
	lease   time.Duration
	warmup  WarmupConfig
	kv      jetstream.KeyValue
	js      jetstream.JetStream
	publish func(context.Context, *events.Event) error
	sender  string
	log     *slog.Logger
	now     func() time.Time

	mu       sync.Mutex
	held     map[string]uint64 // connection slot key → its revision
	backoff  map[string]backoffState
	warm     map[string]int // warm.<ip>.<site>.<day> → count in the bucket
	listed   map[string]Listing
	warmFrom map[string]time.Time // source IP → first warm-up day
	rotation map[string]int       // site → rotation offset
	buckets  map[string]*tokens   // local token blocks by key
	// heldN counts this process's slots per conn.<ip>.<site>. prefix, so
	// that a process at the limit says busy without a round trip.
	heldN map[string]int
	// slots are the connection slots some process held when last watched,
	// and when that was: AcquireConn tries the others first, and only
	// those, while they are fresher than a lease (a holder rewrites its
	// slot every third of one).
	slots map[string]time.Time
	// saidWaiting is when this process last wrote each want key;
	// onWaiting are told of other processes' (conns.go, Waiting).
	saidWaiting map[string]time.Time
	onWaiting   []func(src, site string)

	// keysMu guards the caches of what every job and message would
	// otherwise build again: keys per pair, and sites per domain and MX set
	// (the configuration they derive from does not change).
	keysMu sync.RWMutex
	keys   map[pair]*pairKeys
	sites  map[string]string

	stop context.CancelFunc
	wg   sync.WaitGroup
}

var _ delivery.Shaper = (*Shaper)(nil)

// New declares the bucket, loads the current backoff, warm-up and
// blocklist state and starts watching it, and starts refreshing the
// connection slots this process will hold. Close stops both.
func New(ctx context.Context, opts Options) (*Shaper, error) {
	if opts.JS == nil {
		return nil, errors.New("shaping: no JetStream handle")
	}
	cfg, err := compile(opts.Config)
	if err != nil {
		return nil, err
	}
	kv, err := Bucket(ctx, opts.JS, opts.Replicas)
	if err != nil {
		return nil, err
	}
	s := &Shaper{
		cfg:      cfg,
		lease:    opts.Config.ConnLease,
		warmup:   opts.Warmup,
		kv:       kv,
		js:       opts.JS,
		publish:  opts.Publish,
		sender:   opts.Sender,
		log:      opts.Log,
		now:      opts.Now,
		held:     map[string]uint64{},
		backoff:  map[string]backoffState{},
		warm:     map[string]int{},
		listed:   map[string]Listing{},
		warmFrom: map[string]time.Time{},
		rotation: map[string]int{},
		buckets:  map[string]*tokens{},
		heldN:    map[string]int{},
		slots:    map[string]time.Time{},

		saidWaiting: map[string]time.Time{},
	}
	if s.lease == 0 {
		s.lease = DefaultConfig().ConnLease
	}
	if len(s.warmup.DailyCaps) == 0 {
		s.warmup = DefaultWarmup()
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.sender == "" {
		s.sender = "sender"
	}
	for _, p := range opts.Pools {
		for _, ip := range p.IPs {
			s.learnIP(ip)
		}
	}
	wctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	if err := s.startWatch(ctx, wctx); err != nil {
		stop()
		return nil, err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.refreshLoop(wctx)
	}()
	return s, nil
}

// Close stops watching and refreshing. Slots still held are not released:
// they expire after the lease, as a crashed process's would.
func (s *Shaper) Close() {
	s.stop()
	s.wg.Wait()
}

// learnIP records a source IP's warm-up start date.
func (s *Shaper) learnIP(ip pool.IP) {
	if ip.WarmupStart == "" {
		return
	}
	d, err := time.Parse(time.DateOnly, ip.WarmupStart)
	if err != nil {
		return // pool.Set.Validate reports it
	}
	s.mu.Lock()
	s.warmFrom[ip.Address] = d
	s.mu.Unlock()
}

// learnIPs records the warm-up start dates of addresses not known yet
// (Sources runs on every job: it parses no date it has seen).
func (s *Shaper) learnIPs(ips []pool.IP) {
	for _, ip := range ips {
		if ip.WarmupStart == "" {
			continue
		}
		s.mu.Lock()
		d, ok := s.warmFrom[ip.Address]
		s.mu.Unlock()
		if !ok || d.Format(time.DateOnly) != ip.WarmupStart {
			s.learnIP(ip)
		}
	}
}

// pair is a (source IP, site).
type pair struct{ src, site string }

// pairKeys are the bucket keys of a pair, built once: they are needed on
// every job and message.
type pairKeys struct {
	own, all    string // backoff of the IP, and of every IP, toward the site
	rate, rateh string
	conn        string // prefix of the connection slots
	want        string // a process waits for a slot (conns.go, Waiting)
	warm        string // prefix of the warm-up counters (the day follows)

	mu    sync.Mutex
	slots []string // conn + n, by n
}

// slot is the key of connection slot n.
func (k *pairKeys) slot(n int) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	for len(k.slots) <= n {
		k.slots = append(k.slots, k.conn+strconv.Itoa(len(k.slots)))
	}
	return k.slots[n]
}

// maxKeys bounds the caches of pairKeys and of sites: past it (a sender
// that has seen that many pairs or domains) a cache starts afresh.
const maxKeys = 100_000

func (s *Shaper) keysOf(src, site string) *pairKeys {
	p := pair{src, site}
	s.keysMu.RLock()
	k, ok := s.keys[p]
	s.keysMu.RUnlock()
	if ok {
		return k
	}
	it, st := IPToken(src), siteToken(site)
	k = &pairKeys{
		own:   "backoff." + it + "." + st,
		all:   "backoff." + allIPs + "." + st,
		rate:  "rate." + it + "." + st,
		rateh: "rateh." + it + "." + st,
		conn:  "conn." + it + "." + st + ".",
		want:  "want." + it + "." + st,
		warm:  "warm." + it + "." + st + ".",
	}
	s.keysMu.Lock()
	if s.keys == nil || len(s.keys) >= maxKeys {
		s.keys = map[pair]*pairKeys{}
	}
	s.keys[p] = k
	s.keysMu.Unlock()
	return k
}

// Site names the destination site of domain: a domain with its own
// connection or rate limit is its own site; otherwise the first site rule
// whose patterns match one of the MX hosts; otherwise the MX host names
// with their first label dropped, sorted and joined with commas (KumoMTA's
// site_name), so that every domain hosted on the same MX hosts shares one
// site.
func (s *Shaper) Site(domain string, mxHosts []string) string {
	// Named once per domain and MX set: every job asks. The lookup key is
	// built on the stack; indexing with string(key) does not allocate.
	var buf [256]byte
	key := append(buf[:0], domain...)
	for _, h := range mxHosts {
		key = append(append(key, 0), h...)
	}
	s.keysMu.RLock()
	site, ok := s.sites[string(key)]
	s.keysMu.RUnlock()
	if ok {
		return site
	}
	site = s.site(domain, mxHosts)
	s.keysMu.Lock()
	if s.sites == nil || len(s.sites) >= maxKeys {
		s.sites = map[string]string{}
	}
	s.sites[string(key)] = site
	s.keysMu.Unlock()
	return site
}

func (s *Shaper) site(domain string, mxHosts []string) string {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if l, ok := s.cfg.domains[domain]; ok && l.rated() {
		return domain
	}
	hosts := make([]string, 0, len(mxHosts))
	for _, h := range mxHosts {
		hosts = append(hosts, strings.ToLower(strings.TrimSuffix(h, ".")))
	}
	for _, r := range s.cfg.sites {
		for _, p := range r.MX {
			for _, h := range hosts {
				if matchHost(p, h) {
					return r.Name
				}
			}
		}
	}
	return siteName(domain, hosts)
}

// matchHost reports whether host matches pattern ("*.example.com" or a
// host name).
func matchHost(pattern, host string) bool {
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return strings.HasSuffix(host, suffix)
	}
	return host == pattern
}

// siteName is the site of MX hosts no rule matches.
func siteName(domain string, hosts []string) string {
	if len(hosts) == 0 {
		return domain
	}
	var names []string
	for _, h := range hosts {
		// A transport's host:port, or an address: no label to drop.
		if i := strings.LastIndexByte(h, ':'); i > 0 && !strings.Contains(h[:i], ":") {
			h = h[:i]
		}
		if labels := strings.Split(h, "."); len(labels) > 2 && !isNumeric(labels[len(labels)-1]) {
			h = strings.Join(labels[1:], ".")
		}
		if !slices.Contains(names, h) {
			names = append(names, h)
		}
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}

func isNumeric(s string) bool { return s != "" && strings.Trim(s, "0123456789") == "" }

// Limits are the limits toward site for domain: defaults, then the site's,
// then the domain's.
func (s *Shaper) Limits(site, domain string) delivery.Limits {
	l := s.siteLimits(site)
	if d, ok := s.cfg.domains[strings.ToLower(domain)]; ok {
		d.apply(&l)
	}
	return l
}

// siteLimits are the limits of a site, before any throttling.
func (s *Shaper) siteLimits(site string) delivery.Limits {
	l := s.cfg.defaults
	if sl, ok := s.cfg.bySite[site]; ok {
		sl.apply(&l)
	}
	// A domain with its own connection or rate limits is its own site.
	if d, ok := s.cfg.domains[site]; ok && d.rated() {
		d.apply(&l)
	}
	return l
}

// effective are the limits of (src, site) with any throttle in force.
func (s *Shaper) effective(src, site string, now time.Time) delivery.Limits {
	l := s.siteLimits(site)
	for _, b := range s.states(src, site, now) {
		if b.Kind != KindThrottle {
			continue
		}
		if b.Factor > 0 {
			l.MaxConnections = max(1, int(float64(l.MaxConnections)*b.Factor))
			l.MessagesPerSecond *= b.Factor
			if l.MessagesPerHour > 0 {
				l.MessagesPerHour = max(1, int(float64(l.MessagesPerHour)*b.Factor))
			}
		}
		if b.Connections > 0 {
			l.MaxConnections = min(l.MaxConnections, b.Connections)
		}
		if b.Rate > 0 && (l.MessagesPerSecond == 0 || b.Rate < l.MessagesPerSecond) {
			l.MessagesPerSecond = b.Rate
		}
	}
	return l
}

// Sources orders ips for site: rotation order, starting one further on each
// call, leaving out addresses that are suspended or removed toward site,
// listed on a DNSBL, or over their warm-up cap today. With none left, until
// is the earliest time one of them may be usable again.
func (s *Shaper) Sources(site string, ips []pool.IP) ([]pool.IP, time.Time) {
	now := s.now()
	if len(ips) == 0 {
		return nil, now.Add(time.Minute)
	}
	// Addresses of pools added after New (or tests) bring their own
	// warm-up start.
	s.learnIPs(ips)
	s.mu.Lock()
	off := s.rotation[site] % len(ips)
	s.rotation[site] = off + 1
	s.mu.Unlock()
	var usable []pool.IP
	var until time.Time
	later := func(t time.Time) {
		if until.IsZero() || t.Before(until) {
			until = t
		}
	}
	for i := range ips {
		ip := ips[(off+i)%len(ips)]
		if t, ok := s.blocked(ip.Address, site, now); ok {
			later(t)
			continue
		}
		if s.overCap(ip.Address, site, now) {
			later(nextDay(now))
			continue
		}
		usable = append(usable, ip)
	}
	if len(usable) > 0 {
		return usable, time.Time{}
	}
	return nil, until
}

// blocked reports whether src may not send to site now (listed, suspended
// or removed) and until when.
func (s *Shaper) blocked(src, site string, now time.Time) (time.Time, bool) {
	s.mu.Lock()
	l, listed := s.listed[src]
	s.mu.Unlock()
	var until time.Time
	if listed && l.Listed() {
		until = l.Next
		if !until.After(now) {
			until = now.Add(time.Minute)
		}
	}
	for _, b := range s.states(src, site, now) {
		if (b.Kind == KindSuspend || b.Kind == KindRemove) && b.Until.After(until) {
			until = b.Until
		}
	}
	return until, !until.IsZero()
}

// nextDay is the next 00:00 UTC.
func nextDay(now time.Time) time.Time {
	y, m, d := now.UTC().Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC)
}

// AllowMessage waits until src may send one more message to site: not
// suspended, within its warm-up cap today, and within the site's message
// rates (shared by every sender process).
func (s *Shaper) AllowMessage(ctx context.Context, src, site string, maxWait time.Duration) error {
	now := s.now()
	if until, ok := s.blocked(src, site, now); ok {
		return fmt.Errorf("%s toward %s: suspended until %s: %w", src, site, until.UTC().Format(time.RFC3339), delivery.ErrRateLimited)
	}
	took, err := s.takeWarmup(ctx, src, site, now)
	if err != nil {
		return err
	}
	l := s.effective(src, site, now)
	if err := s.takeRate(ctx, src, site, l, maxWait); err != nil {
		if took != "" {
			s.giveBack(took)
		}
		return err
	}
	return nil
}

// randomOffset spreads the first slot tried across processes.
func randomOffset(n int) int { return rand.IntN(n) }
