package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRegistry_Write(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("outflow_test_events_total", "Events seen.")
	g := r.Gauge("outflow_test_ratio", "A ratio\nover two lines.")
	r.GaugeFunc("outflow_test_backlog", "Backlog.", func(context.Context) (float64, error) { return 42, nil })
	r.GaugeFunc("outflow_test_broken", "Fails.", func(context.Context) (float64, error) { return 0, errors.New("down") })
	c.Add(3)
	c.Inc()
	g.Set(0.25)
	var b strings.Builder
	if err := r.Write(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	want := `# HELP outflow_test_backlog Backlog.
# TYPE outflow_test_backlog gauge
outflow_test_backlog 42
# HELP outflow_test_events_total Events seen.
# TYPE outflow_test_events_total counter
outflow_test_events_total 4
# HELP outflow_test_ratio A ratio\nover two lines.
# TYPE outflow_test_ratio gauge
outflow_test_ratio 0.25
`
	if b.String() != want {
		t.Errorf("Write =\n%s\nwant\n%s", b.String(), want)
	}
}

func TestRegistry_Nil(t *testing.T) {
	var r *Registry
	c := r.Counter("x_total", "x")
	c.Inc() // counts, but nothing is exposed
	if c.Value() != 1 {
		t.Errorf("counter of a nil registry = %d, want 1", c.Value())
	}
}

func TestRegistry_BadName(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Counter(\"bad-name\") did not panic")
		}
	}()
	NewRegistry().Counter("bad-name", "x")
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		give    string
		wantErr bool
	}{
		{"", false}, {"127.0.0.1:9464", false}, {":9464", false}, {"nope", true}, {"127.0.0.1:", true},
	}
	for _, tt := range tests {
		if err := (Config{Listen: tt.give}).Validate(); (err != nil) != tt.wantErr {
			t.Errorf("Validate(%q) = %v, want error %v", tt.give, err, tt.wantErr)
		}
	}
}

func TestServe(t *testing.T) {
	r := NewRegistry()
	r.Counter("outflow_test_total", "t").Add(7)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, l, r, false, slog.New(slog.DiscardHandler)) }()
	resp, err := http.Get("http://" + l.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type = %q", ct)
	}
	if !strings.Contains(string(body), "outflow_test_total 7\n") {
		t.Errorf("GET /metrics =\n%s", body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve = %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
}

// TestServe_Pprof: the profiles are served only when asked for.
func TestServe_Pprof(t *testing.T) {
	for _, on := range []bool{false, true} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- serve(ctx, l, NewRegistry(), on, slog.New(slog.DiscardHandler)) }()
		resp, err := http.Get("http://" + l.Addr().String() + "/debug/pprof/goroutine?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := http.StatusNotFound
		if on {
			want = http.StatusOK
		}
		if resp.StatusCode != want || on && !strings.Contains(string(body), "goroutine profile:") {
			t.Errorf("pprof %v: GET goroutine = %d %.80q, want %d", on, resp.StatusCode, body, want)
		}
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
