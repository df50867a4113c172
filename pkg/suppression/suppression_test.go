package suppression

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/natstest"
)

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), natstest.JetStream(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// runList starts a List on s and waits until it has loaded the bucket.
func runList(t *testing.T, s *Store) *List {
	t.Helper()
	l := NewList()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx, s, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("List.Run: %v", err)
		}
	})
	select {
	case <-l.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("list not ready within 5s")
	}
	return l
}

// waitFor polls cond until it holds; the list learns of changes by watch.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 3s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestKey_CaseInsensitiveAndPerTenant(t *testing.T) {
	if Key("acme", "Bob@Example.NET") != Key("acme", "bob@example.net") {
		t.Error("Key differs by case")
	}
	if Key("acme", "bob@example.net") == Key("other", "bob@example.net") {
		t.Error("Key ignores the tenant")
	}
}

func TestStore_AddKeepsStrongerEntry(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	now := time.Now().UTC()
	complaint := Entry{Tenant: "acme", Address: "bob@example.net", Reason: "abuse", Source: SourceComplaint, Created: now}
	if ok, err := s.Add(ctx, complaint); err != nil || !ok {
		t.Fatalf("Add(complaint) = %v, %v", ok, err)
	}
	bounce := Entry{Tenant: "acme", Address: "BOB@example.net", Reason: "userunknown", Source: SourceBounce,
		Created: now.Add(time.Minute), Expires: now.Add(30 * 24 * time.Hour)}
	if ok, err := s.Add(ctx, bounce); err != nil || ok {
		t.Fatalf("Add(bounce over complaint) = %v, %v, want false (complaint lasts forever)", ok, err)
	}
	got, err := s.Get(ctx, "acme", "bob@example.net")
	if err != nil || got.Source != SourceComplaint {
		t.Fatalf("Get = %+v, %v, want the complaint", got, err)
	}

	// An expired entry gives way to a new one.
	old := Entry{Tenant: "acme", Address: "carol@example.net", Source: SourceBounce, Created: now.Add(-48 * time.Hour), Expires: now.Add(-time.Hour)}
	if _, err := s.Add(ctx, old); err != nil {
		t.Fatal(err)
	}
	fresh := Entry{Tenant: "acme", Address: "carol@example.net", Source: SourceBounce, Created: now, Expires: now.Add(time.Hour)}
	if ok, err := s.Add(ctx, fresh); err != nil || !ok {
		t.Fatalf("Add over expired = %v, %v, want true", ok, err)
	}
}

func TestStore_BadEntry(t *testing.T) {
	s := openStore(t)
	for _, e := range []Entry{{Address: "a@b.example"}, {Tenant: "acme", Address: "nobody"}, {Tenant: "acme", Address: "@b.example"}} {
		if _, err := s.Add(context.Background(), e); !errors.Is(err, ErrBadEntry) {
			t.Errorf("Add(%+v) = %v, want ErrBadEntry", e, err)
		}
	}
}

func TestStore_ListRemove(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	now := time.Now().UTC()
	for _, a := range []string{"a@x.example", "b@x.example"} {
		if _, err := s.Add(ctx, Entry{Tenant: "acme", Address: a, Source: SourceManual, Created: now}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Add(ctx, Entry{Tenant: "acme-2", Address: "c@x.example", Source: SourceManual, Created: now}); err != nil {
		t.Fatal(err)
	}
	list := func() []string {
		es, err := s.List(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range es {
			out = append(out, e.Address)
		}
		slices.Sort(out)
		return out
	}
	if got, want := list(), []string{"a@x.example", "b@x.example"}; !slices.Equal(got, want) {
		t.Fatalf("List(acme) = %v, want %v (acme-2's entry must not show)", got, want)
	}
	if err := s.Remove(ctx, "acme", "A@x.example"); err != nil {
		t.Fatal(err)
	}
	if got, want := list(), []string{"b@x.example"}; !slices.Equal(got, want) {
		t.Fatalf("after Remove: List = %v, want %v", got, want)
	}
	if err := s.Remove(ctx, "acme", "a@x.example"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove again = %v, want ErrNotFound", err)
	}
}

func TestList_WatchFilterExpiry(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	now := time.Now().UTC()
	// Present before the list starts: loaded at Ready.
	if _, err := s.Add(ctx, Entry{Tenant: "acme", Address: "gone@x.example", Reason: "userunknown", Source: SourceBounce,
		Created: now, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	l := runList(t, s)
	// Added after: learnt by the watch.
	if _, err := s.Add(ctx, Entry{Tenant: "acme", Address: "angry@x.example", Reason: "abuse", Source: SourceComplaint, Created: now}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "complaint entry reaches the list", func() bool { _, ok := l.Lookup("acme", "angry@x.example", now); return ok })

	rcpts := []string{"ok@x.example", "Gone@X.example", "angry@x.example"}
	keep, dropped := l.Filter("acme", rcpts, now)
	if !slices.Equal(keep, []string{"ok@x.example"}) || len(dropped) != 2 || dropped[0].Address != "Gone@X.example" || dropped[1].Reason != "abuse" {
		t.Errorf("Filter = %v, %+v", keep, dropped)
	}
	if keep, _ := l.Filter("other", rcpts, now); len(keep) != 3 {
		t.Errorf("Filter(other tenant) kept %v, want all three", keep)
	}
	// After its expiry the bounce entry no longer applies.
	if keep, _ := l.Filter("acme", rcpts, now.Add(2*time.Hour)); !slices.Equal(keep, []string{"ok@x.example", "Gone@X.example"}) {
		t.Errorf("Filter after expiry = %v", keep)
	}
	if err := s.Remove(ctx, "acme", "angry@x.example"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "removal reaches the list", func() bool { _, ok := l.Lookup("acme", "angry@x.example", now); return !ok })
}

func BenchmarkList_Filter(b *testing.B) {
	l := NewList()
	now := time.Now()
	for i := range 100000 {
		e := Entry{Tenant: "acme", Address: "u" + string(rune('a'+i%26)) + "@x.example", Source: SourceBounce, Created: now}
		l.entries[Key(e.Tenant, e.Address)] = e
	}
	rcpts := []string{"a@y.example", "b@y.example", "ua@x.example", "c@y.example"}
	b.ReportAllocs()
	for b.Loop() {
		l.Filter("acme", rcpts, now)
	}
}

func TestStore_Purge(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	if n, err := s.Purge(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("Purge(empty) = %d, %v", n, err)
	}
	now := time.Now().UTC()
	for _, e := range []Entry{
		{Tenant: "acme", Address: "old@x.example", Source: SourceBounce, Created: now.Add(-31 * 24 * time.Hour), Expires: now.Add(-24 * time.Hour)},
		{Tenant: "acme", Address: "new@x.example", Source: SourceBounce, Created: now, Expires: now.Add(24 * time.Hour)},
		{Tenant: "acme", Address: "forever@x.example", Source: SourceComplaint, Created: now.Add(-365 * 24 * time.Hour)},
	} {
		if _, err := s.Add(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Purge(ctx, now); err != nil || n != 1 {
		t.Fatalf("Purge = %d, %v, want 1", n, err)
	}
	es, err := s.List(ctx, "acme")
	if err != nil || len(es) != 2 {
		t.Fatalf("after Purge: %+v, %v, want new@ and forever@", es, err)
	}
	for _, e := range es {
		if e.Address == "old@x.example" {
			t.Errorf("expired entry survived Purge")
		}
	}
}
