//go:build integration

package chtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/outflowmail/outflow/pkg/chtest"
)

func TestServer_RestartKeepsData(t *testing.T) {
	ch := chtest.Start(t)
	ctx := context.Background()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{ch.Addr()}, DialTimeout: time.Second, ReadTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Exec(ctx, "CREATE TABLE t (a UInt8) ENGINE = MergeTree() ORDER BY a"); err != nil {
		t.Fatal(err)
	}
	// 18.16 waits for a data block after INSERT ... VALUES sent by Exec;
	// inserts go through batches.
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO t (a)")
	if err != nil {
		t.Fatal(err)
	}
	if err := batch.Append(uint8(7)); err != nil {
		t.Fatal(err)
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}

	ch.Stop()
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("Ping after Stop succeeded, want an error")
	}
	ch.Restart()

	var got uint8
	if err := conn.QueryRow(ctx, "SELECT a FROM t").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != 7 {
		t.Errorf("SELECT a = %d after restart, want 7", got)
	}
}
