// Package metrics exposes a process's counters and gauges over HTTP in the
// Prometheus text exposition format (version 0.0.4), for any Prometheus-
// compatible scraper. Roles register what they measure in the process's one
// Registry; the endpoint runs when metrics.listen is set.
//
// It is deliberately small: counters, gauges set by the code, and gauges
// computed at scrape time (such as the analytics backlog, read from
// JetStream), all without labels.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config of the metrics endpoint.
type Config struct {
	// Listen is the address of the HTTP endpoint serving /metrics, e.g.
	// 127.0.0.1:9464; empty turns it off.
	Listen string `yaml:"listen"`
	// Pprof also serves Go's profiles under /debug/pprof/ on the same
	// listener. Off by default: a heap or goroutine dump shows message data
	// in memory, so it belongs on a loopback or operator-only address.
	Pprof bool `yaml:"pprof"`
}

// Validate names the bad key.
func (c Config) Validate() error {
	if c.Listen == "" {
		return nil
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		return fmt.Errorf("metrics.listen: %q is not host:port", c.Listen)
	}
	return nil
}

// Counter only goes up.
type Counter struct{ v atomic.Uint64 }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Inc adds 1.
func (c *Counter) Inc() { c.v.Add(1) }

// Value is the count so far.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Gauge is a value set by the code.
type Gauge struct{ bits atomic.Uint64 }

// Set sets the value.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Value is the last value set.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

// GaugeFunc computes a gauge when scraped. An error leaves the sample out
// of that scrape.
type GaugeFunc func(ctx context.Context) (float64, error)

type metric struct {
	name, help, kind string
	value            func(ctx context.Context) (float64, error)
}

// Registry is the set of a process's metrics. It is safe for concurrent
// use; a nil *Registry accepts registrations and keeps nothing, so code can
// measure whether or not an endpoint runs.
type Registry struct {
	mu      sync.Mutex
	metrics map[string]metric
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{metrics: map[string]metric{}} }

// Counter registers and returns a counter. Registering a name again returns
// a new counter that replaces the old one (a role restarted in-process).
func (r *Registry) Counter(name, help string) *Counter {
	c := &Counter{}
	r.add(metric{name: name, help: help, kind: "counter",
		value: func(context.Context) (float64, error) { return float64(c.Value()), nil }})
	return c
}

// Gauge registers and returns a gauge.
func (r *Registry) Gauge(name, help string) *Gauge {
	g := &Gauge{}
	r.add(metric{name: name, help: help, kind: "gauge",
		value: func(context.Context) (float64, error) { return g.Value(), nil }})
	return g
}

// GaugeFunc registers a gauge computed by f at each scrape.
func (r *Registry) GaugeFunc(name, help string, f GaugeFunc) {
	r.add(metric{name: name, help: help, kind: "gauge", value: f})
}

func (r *Registry) add(m metric) {
	if r == nil {
		return
	}
	if !validName(m.name) {
		panic(fmt.Sprintf("metrics: invalid metric name %q", m.name)) // a programming error
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metrics[m.name] = m
}

// validName: [a-zA-Z_:][a-zA-Z0-9_:]*, Prometheus' metric name syntax.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_' || c == ':', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// Write writes every metric in the text format, sorted by name.
func (r *Registry) Write(ctx context.Context, w io.Writer) error {
	r.mu.Lock()
	ms := make([]metric, 0, len(r.metrics))
	for _, m := range r.metrics {
		ms = append(ms, m)
	}
	r.mu.Unlock()
	slices.SortFunc(ms, func(a, b metric) int { return strings.Compare(a.name, b.name) })
	var b strings.Builder
	for _, m := range ms {
		v, err := m.value(ctx)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", m.name, escapeHelp(m.help), m.name, m.kind, m.name, format(v))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

func format(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// Handler serves the registry at any path; gauges computed at scrape time
// get 5 s.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_ = r.Write(ctx, w)
	})
}

// Serve runs the endpoint (GET /metrics) until ctx ends, then shuts it down
// and returns. With an empty Listen it only waits for ctx.
func Serve(ctx context.Context, cfg Config, r *Registry, log *slog.Logger) error {
	if cfg.Listen == "" {
		<-ctx.Done()
		return nil
	}
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("metrics listen %s: %w", cfg.Listen, err)
	}
	return serve(ctx, l, r, cfg.Pprof, log)
}

func serve(ctx context.Context, l net.Listener, r *Registry, profiles bool, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", r.Handler())
	if profiles {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	log.Info("metrics endpoint", "addr", l.Addr().String())
	select {
	case err := <-done:
		return fmt.Errorf("metrics endpoint: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
