// Package chstore writes the pipeline's events into ClickHouse, where the
// analyst queries and the reputation loop read them. It applies the schema of
// deploy/clickhouse (package chschema) and turns events into rows: a routed
// event into a messages row, a delivery event into one deliveries row per
// recipient, a verdict event into a verdicts row.
//
// Rows are keyed by event id in ReplacingMergeTree tables, so an event stored
// twice (a redelivery after a lost ack) collapses to one row; Insert also drops
// repeats within one call, and Present lets a caller skip events that are
// already stored — the analytics loader does so for every batch, because the
// per-minute rollups (materialized views) count every inserted row.
// Migrate renders each migration for the server's version (chschema).
// docs/analytics.md describes the schema and query patterns.
//
// It speaks the native protocol (clickhouse-go v2), which works with ClickHouse
// 18.16 as well as current releases; the HTTP interface of 18.16 does not.
package chstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	chschema "github.com/outflowmail/outflow/deploy/clickhouse"
)

// Config says how to reach ClickHouse.
type Config struct {
	// Addr is the native protocol address, host:port (port 9000 by default
	// on a ClickHouse server).
	Addr string `yaml:"addr"`
	// Database holds Outflow's tables; Migrate creates it.
	Database string `yaml:"database"`
	// User and Password authenticate; ClickHouse's stock user is "default"
	// with an empty password.
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	// DialTimeout bounds connecting to the server.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// QueryTimeout bounds waiting for a reply to any one query or insert, so
	// that a server that hangs counts as down rather than blocking forever.
	QueryTimeout time.Duration `yaml:"query_timeout"`
	// RetentionDays is how long raw event rows (messages, deliveries,
	// verdicts, ...) are kept, by a table TTL on servers that have TTL
	// (19.6+); 0 keeps them. Read when the tables are created: a later
	// change needs ALTER TABLE ... MODIFY TTL (docs/analytics.md).
	RetentionDays int `yaml:"retention_days"`
	// RollupRetentionDays is the same for the per-minute rollups, which
	// are small and feed the reputation loop's 7-day baselines.
	RollupRetentionDays int `yaml:"rollup_retention_days"`
}

// DefaultConfig returns the defaults: a local server, database "outflow".
func DefaultConfig() Config {
	return Config{
		Addr:         "127.0.0.1:9000",
		Database:     "outflow",
		User:         "default",
		DialTimeout:  5 * time.Second,
		QueryTimeout: 60 * time.Second,

		RetentionDays:       180,
		RollupRetentionDays: 730,
	}
}

// Validate names the first bad key.
func (c Config) Validate() error {
	if _, port, err := net.SplitHostPort(c.Addr); err != nil || port == "" {
		return fmt.Errorf("analytics.clickhouse.addr: %q is not host:port", c.Addr)
	}
	switch {
	case !isIdentifier(c.Database):
		return fmt.Errorf("analytics.clickhouse.database: %q is not a plain identifier (letters, digits, _)", c.Database)
	case c.DialTimeout <= 0:
		return errors.New("analytics.clickhouse.dial_timeout: must be positive")
	case c.QueryTimeout <= 0:
		return errors.New("analytics.clickhouse.query_timeout: must be positive")
	case c.RetentionDays < 0:
		return errors.New("analytics.clickhouse.retention_days: must be 0 (keep) or positive")
	case c.RollupRetentionDays < 0:
		return errors.New("analytics.clickhouse.rollup_retention_days: must be 0 (keep) or positive")
	case c.RollupRetentionDays > 0 && c.RollupRetentionDays < 8:
		return errors.New("analytics.clickhouse.rollup_retention_days: must be 0 or at least 8 (the reputation baseline reads 7 days)")
	}
	return nil
}

// Store is a connection pool to ClickHouse. It is safe for concurrent use.
type Store struct {
	cfg Config
	// conn works in cfg.Database. server has no database selected: it can
	// answer, and create the database, before the database exists (the
	// server refuses a connection naming a missing database).
	conn   driver.Conn
	server driver.Conn
}

// Open connects to the server and checks that it answers. The database need
// not exist yet; Migrate creates it.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := func(db string) *clickhouse.Options {
		return &clickhouse.Options{
			Addr:        []string{cfg.Addr},
			Auth:        clickhouse.Auth{Database: db, Username: cfg.User, Password: cfg.Password},
			DialTimeout: cfg.DialTimeout,
			ReadTimeout: cfg.QueryTimeout,
			// LZ4 is what every release since long before 18.16 speaks.
			Compression:  &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
			MaxIdleConns: 2,
		}
	}
	server, err := clickhouse.Open(opts(""))
	if err != nil {
		return nil, fmt.Errorf("open clickhouse %s: %w", cfg.Addr, err)
	}
	if err := server.Ping(ctx); err != nil {
		server.Close()
		return nil, fmt.Errorf("ping clickhouse %s: %w", cfg.Addr, err)
	}
	conn, err := clickhouse.Open(opts(cfg.Database))
	if err != nil {
		server.Close()
		return nil, fmt.Errorf("open clickhouse %s: %w", cfg.Addr, err)
	}
	return &Store{cfg: cfg, conn: conn, server: server}, nil
}

// Close closes the connections.
func (s *Store) Close() error {
	return errors.Join(s.conn.Close(), s.server.Close())
}

// Conn is the connection pool, working in the configured database, for
// queries of other packages (the reputation loop, tests).
func (s *Store) Conn() driver.Conn { return s.conn }

// Migrate creates the database and applies, in order, every embedded
// migration not yet recorded in its schema_migrations table, rendered for
// the server's version (chschema.FeaturesFor) and the configured retention.
// Applying twice is a no-op. Two processes migrating at once may both run a
// pending file; the files create with IF NOT EXISTS, so that is harmless.
func (s *Store) Migrate(ctx context.Context) error {
	_, err := s.MigrateReport(ctx)
	return err
}

// MigrateReport is Migrate, returning the migrations it applied.
func (s *Store) MigrateReport(ctx context.Context) ([]chschema.Migration, error) {
	ms, err := chschema.Migrations()
	if err != nil {
		return nil, err
	}
	return s.migrate(ctx, ms)
}

// MigrationStatus is the schema's state on the server.
type MigrationStatus struct {
	// Features are the server's, with the configured retention.
	Features chschema.Features
	// Applied are the versions recorded in schema_migrations, including any
	// applied by a newer binary and unknown to this one.
	Applied []int
	// Pending are the embedded migrations not applied yet, rendered for
	// this server.
	Pending []chschema.Migration
}

// Status reports applied and pending migrations without changing anything:
// a database or schema_migrations table that does not exist yet means
// nothing is applied.
func (s *Store) Status(ctx context.Context) (MigrationStatus, error) {
	ms, err := chschema.Migrations()
	if err != nil {
		return MigrationStatus{}, err
	}
	f, err := s.Features(ctx)
	if err != nil {
		return MigrationStatus{}, err
	}
	st := MigrationStatus{Features: f}
	var exists uint64
	if err := s.server.QueryRow(ctx,
		"SELECT count() FROM system.tables WHERE database = ? AND name = 'schema_migrations'",
		s.cfg.Database).Scan(&exists); err != nil {
		return MigrationStatus{}, fmt.Errorf("look up schema_migrations: %w", err)
	}
	applied := map[int]bool{}
	if exists > 0 {
		if applied, err = s.appliedVersions(ctx); err != nil {
			return MigrationStatus{}, err
		}
	}
	st.Pending, err = pending(ms, applied, f)
	if err != nil {
		return MigrationStatus{}, err
	}
	st.Applied = sortedVersions(applied)
	return st, nil
}

// Version is the server's version string (SELECT version()).
func (s *Store) Version(ctx context.Context) (string, error) {
	var v string
	if err := s.server.QueryRow(ctx, "SELECT version()").Scan(&v); err != nil {
		return "", fmt.Errorf("clickhouse version: %w", err)
	}
	return v, nil
}

// Features are what the server supports, with the configured retention:
// what migrations are rendered with.
func (s *Store) Features(ctx context.Context) (chschema.Features, error) {
	v, err := s.Version(ctx)
	if err != nil {
		return chschema.Features{}, err
	}
	f, err := chschema.FeaturesFor(v)
	if err != nil {
		return chschema.Features{}, err
	}
	f.RetentionDays, f.RollupRetentionDays = s.cfg.RetentionDays, s.cfg.RollupRetentionDays
	return f, nil
}

func (s *Store) migrate(ctx context.Context, ms []chschema.Migration) ([]chschema.Migration, error) {
	if err := s.server.Exec(ctx, "CREATE DATABASE IF NOT EXISTS `"+s.cfg.Database+"`"); err != nil {
		return nil, fmt.Errorf("create database %s: %w", s.cfg.Database, err)
	}
	// The record of applied versions is created here rather than by a
	// migration: it must exist before the first one is looked up.
	const ddl = `CREATE TABLE IF NOT EXISTS schema_migrations
(
    version UInt32,
    name    String,
    applied DateTime
)
ENGINE = ReplacingMergeTree()
ORDER BY version`
	if err := s.conn.Exec(ctx, ddl); err != nil {
		return nil, fmt.Errorf("create schema_migrations: %w", err)
	}
	applied, err := s.appliedVersions(ctx)
	if err != nil {
		return nil, err
	}
	f, err := s.Features(ctx)
	if err != nil {
		return nil, err
	}
	todo, err := pending(ms, applied, f)
	if err != nil {
		return nil, err
	}
	for i, m := range todo {
		for _, stmt := range m.Statements() {
			if err := s.conn.Exec(ctx, stmt); err != nil {
				return todo[:i], fmt.Errorf("migration %s: %w", m.Name, err)
			}
		}
		if err := s.record(ctx, m); err != nil {
			return todo[:i], err
		}
	}
	return todo, nil
}

// pending renders, in order, the migrations of ms not in applied. Every
// pending file is rendered before any runs, so a template error stops the
// migration before it changes anything.
func pending(ms []chschema.Migration, applied map[int]bool, f chschema.Features) ([]chschema.Migration, error) {
	var todo []chschema.Migration
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		r, err := m.Render(f)
		if err != nil {
			return nil, err
		}
		todo = append(todo, r)
	}
	return todo, nil
}

// Applied returns the versions recorded in schema_migrations, in order.
func (s *Store) Applied(ctx context.Context) ([]int, error) {
	set, err := s.appliedVersions(ctx)
	if err != nil {
		return nil, err
	}
	return sortedVersions(set), nil
}

func sortedVersions(set map[int]bool) []int {
	vs := make([]int, 0, len(set))
	for v := range set {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	return vs
}

func (s *Store) appliedVersions(ctx context.Context) (map[int]bool, error) {
	rows, err := s.conn.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	defer rows.Close()
	set := map[int]bool{}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("read schema_migrations: %w", err)
		}
		set[int(v)] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	return set, nil
}

func (s *Store) record(ctx context.Context, m chschema.Migration) error {
	// Inserts go through a batch: 18.16 answers INSERT ... VALUES sent as a
	// plain query by waiting for data the driver never sends.
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO schema_migrations (version, name, applied)")
	if err != nil {
		return fmt.Errorf("record migration %s: %w", m.Name, err)
	}
	if err := b.Append(uint32(m.Version), m.Name, time.Now().UTC()); err != nil {
		_ = b.Abort()
		return fmt.Errorf("record migration %s: %w", m.Name, err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("record migration %s: %w", m.Name, err)
	}
	return nil
}

// isIdentifier reports whether s is a plain identifier, safe to splice into
// CREATE DATABASE.
func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
