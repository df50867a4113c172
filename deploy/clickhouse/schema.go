// Package chschema carries Outflow's ClickHouse schema: the ordered migration
// files of this directory, embedded so that the binary applies them at start
// (pkg/chstore) without needing the source tree.
//
// A migration file is named NNNN_description.sql; NNNN is its version, and
// versions are applied in increasing order, each once. A file holds one or
// more statements, each ending with a semicolon at the end of a line. Table
// names are unqualified: they are created in the configured database. The SQL
// must run on ClickHouse 18.16 (Debian's) and on current releases.
//
// Version-dependent SQL: before it runs, a file is executed as a Go
// text/template (Migration.Render) over the Features of the server at hand,
// derived from SELECT version() by FeaturesFor. Fields: .TTL (19.6+),
// .LowCardinality (19.9+), .DateTime64 (20.1+), .RetentionDays and
// .RollupRetentionDays (configuration, 0 = keep), .Version. Helpers:
//
//	{{lc "String"}}            LowCardinality(String), or String on older servers
//	{{dt64 3}}                 DateTime64(3), or DateTime
//	{{ttl "time" .RetentionDays}}  TTL time + INTERVAL n DAY, or nothing
//	{{if .TTL}}...{{end}}      any statement only where supported
//
// A file may render to no statement at all on an old server; it is still
// recorded as applied there, so features that arrive with a server upgrade
// are not added by it afterwards (docs/analytics.md says how to add them).
// A file without template actions is plain SQL.
package chschema

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

//go:embed *.sql
var files embed.FS

// Migration is one schema file.
type Migration struct {
	// Version is the file's numeric prefix.
	Version int
	// Name is the file name, recorded with the version when applied.
	Name string
	// SQL is the file's text.
	SQL string
}

// Migrations returns the embedded migrations in the order they apply.
func Migrations() ([]Migration, error) {
	return Load(files)
}

// Load reads the *.sql migrations at the top of fsys and orders them by
// version. Two files with the same version are an error.
func Load(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	var ms []Migration
	seen := map[int]string{}
	for _, name := range names {
		v, err := version(name)
		if err != nil {
			return nil, err
		}
		if prev, ok := seen[v]; ok {
			return nil, fmt.Errorf("migration %s: version %d already used by %s", name, v, prev)
		}
		seen[v] = name
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms, nil
}

func version(name string) (int, error) {
	prefix, _, ok := strings.Cut(name, "_")
	if !ok {
		return 0, fmt.Errorf("migration %s: name is not NNNN_description.sql", name)
	}
	v, err := strconv.Atoi(prefix)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("migration %s: version %q is not a positive number", name, prefix)
	}
	return v, nil
}

// Statements splits the migration into the statements to run one by one:
// the native protocol takes a single statement per query. Comment lines
// (starting with --) are dropped; a statement ends at a line ending with ";".
func (m Migration) Statements() []string {
	var stmts []string
	var cur strings.Builder
	for line := range strings.Lines(m.SQL) {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		if strings.HasSuffix(t, ";") {
			stmts = append(stmts, strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(cur.String()), ";")))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		stmts = append(stmts, s)
	}
	return stmts
}
