package jsdeclare

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/natstest"
)

// TestDeclare_UpdatesOnlyOnChange declares each kind of resource three
// times: the first creates it, the second (same configuration) must write
// nothing, the third (changed description) must update it. Updates are
// counted by the server's stream-updated advisories, read up to a sentinel
// stream's advisory sent afterwards (advisories leave the server in order).
func TestDeclare_UpdatesOnlyOnChange(t *testing.T) {
	js := natstest.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	tests := []struct {
		name    string
		stream  string // the stream that holds the resource
		declare func(desc string) error
	}{
		{
			name:   "stream",
			stream: "WORK",
			declare: func(desc string) error {
				_, err := Stream(ctx, js, jetstream.StreamConfig{Name: "WORK", Subjects: []string{"work.>"}, Description: desc})
				return err
			},
		},
		{
			name:   "kv",
			stream: "KV_state",
			declare: func(desc string) error {
				_, err := KeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: "state", History: 3, Description: desc})
				return err
			},
		},
		{
			name:   "kv in memory with TTL markers",
			stream: "KV_slots",
			declare: func(desc string) error {
				_, err := KeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: "slots", History: 1, Description: desc,
					Storage: jetstream.MemoryStorage, LimitMarkerTTL: time.Minute})
				return err
			},
		},
		{
			name:   "object store",
			stream: "OBJ_blobs",
			declare: func(desc string) error {
				_, err := ObjectStore(ctx, js, jetstream.ObjectStoreConfig{Bucket: "blobs", Description: desc})
				return err
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.declare("first"); err != nil {
				t.Fatalf("create: %v", err)
			}
			updates := make(chan string, 16)
			sub, err := js.Conn().Subscribe("$JS.EVENT.ADVISORY.STREAM.UPDATED.>", func(m *nats.Msg) {
				updates <- m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
			})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			if err := js.Conn().Flush(); err != nil {
				t.Fatal(err)
			}

			if err := tt.declare("first"); err != nil {
				t.Fatalf("declare unchanged: %v", err)
			}
			if err := tt.declare("second"); err != nil {
				t.Fatalf("declare changed: %v", err)
			}
			sentinel := "SENTINEL_" + strings.NewReplacer(" ", "_").Replace(tt.name)
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: sentinel, Subjects: []string{sentinel}}); err != nil {
				t.Fatal(err)
			}
			if _, err := js.UpdateStream(ctx, jetstream.StreamConfig{Name: sentinel, Subjects: []string{sentinel}, Description: "barrier"}); err != nil {
				t.Fatal(err)
			}
			var got int
			for done := false; !done; {
				select {
				case s := <-updates:
					switch s {
					case tt.stream:
						got++
					case sentinel:
						done = true
					}
				case <-ctx.Done():
					t.Fatal("no advisory for the sentinel stream")
				}
			}
			if got != 1 {
				t.Errorf("%s updated %d times by an unchanged and a changed declaration, want 1", tt.stream, got)
			}
			s, err := js.Stream(ctx, tt.stream)
			if err != nil {
				t.Fatal(err)
			}
			if d := s.CachedInfo().Config.Description; d != "second" {
				t.Errorf("description after the change = %q, want %q", d, "second")
			}
		})
	}
}
