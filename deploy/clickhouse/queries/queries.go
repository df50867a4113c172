// Package chqueries carries the analyst queries of this directory: SQL files
// over Outflow's ClickHouse tables (tenant abuse leaderboard, pool health,
// bounce reasons, complaint sources, a message's trace), embedded so that
// `outflow ctl trace` and the tests run exactly what an analyst reads.
//
// Each file begins with a comment header: the first line is the title,
// further lines say what the query shows and how to read it, and a line
// "-- param NAME Type: description" declares each parameter. In the SQL a
// parameter is written as ClickHouse's query parameters are, {NAME:Type},
// so that on 19.9 and later a file runs as it is:
//
//	clickhouse-client -d outflow --param_hours=24 --queries-file tenant_abuse_leaderboard.sql
//
// ClickHouse 18.16 has no query parameters; Query.Bind substitutes quoted
// literals for them (that is what `outflow ctl query` and the tests use).
package chqueries

import (
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

//go:embed *.sql
var files embed.FS

// Query is one analyst query file.
type Query struct {
	// Name is the file name without .sql.
	Name string
	// Title is the header's first line.
	Title string
	// Doc is the rest of the header.
	Doc string
	// Params are the declared parameters, in header order.
	Params []Param
	// SQL is the file's text.
	SQL string
}

// Param is a declared parameter.
type Param struct {
	Name, Type, Doc string
}

// All returns the embedded queries, ordered by name.
func All() ([]Query, error) {
	names, err := fs.Glob(files, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("list queries: %w", err)
	}
	var qs []Query
	for _, n := range names {
		b, err := fs.ReadFile(files, n)
		if err != nil {
			return nil, fmt.Errorf("read query %s: %w", n, err)
		}
		q, err := Parse(strings.TrimSuffix(n, ".sql"), string(b))
		if err != nil {
			return nil, err
		}
		qs = append(qs, q)
	}
	return qs, nil
}

// Get returns the embedded query called name.
func Get(name string) (Query, error) {
	qs, err := All()
	if err != nil {
		return Query{}, err
	}
	for _, q := range qs {
		if q.Name == name {
			return q, nil
		}
	}
	return Query{}, fmt.Errorf("no query %q", name)
}

var paramLine = regexp.MustCompile(`^param\s+([a-z_][a-z0-9_]*)\s+([A-Za-z0-9]+)\s*:\s*(.*)$`)

// Parse reads a query file's header. Every {name:Type} in the SQL must be
// declared with that type, and every declared parameter used.
func Parse(name, text string) (Query, error) {
	q := Query{Name: name, SQL: text}
	var doc []string
	for line := range strings.Lines(text) {
		t := strings.TrimSpace(line)
		if !strings.HasPrefix(t, "--") {
			break
		}
		t = strings.TrimSpace(strings.TrimPrefix(t, "--"))
		switch m := paramLine.FindStringSubmatch(t); {
		case m != nil:
			q.Params = append(q.Params, Param{Name: m[1], Type: m[2], Doc: m[3]})
		case q.Title == "":
			q.Title = t
		default:
			doc = append(doc, t)
		}
	}
	q.Doc = strings.TrimSpace(strings.Join(doc, "\n"))
	if q.Title == "" {
		return Query{}, fmt.Errorf("query %s: no title comment on the first line", name)
	}
	used := map[string]bool{}
	for _, m := range placeholder.FindAllStringSubmatch(text, -1) {
		i := slices.IndexFunc(q.Params, func(p Param) bool { return p.Name == m[1] })
		if i < 0 || q.Params[i].Type != m[2] {
			return Query{}, fmt.Errorf("query %s: {%s:%s} is not declared in the header", name, m[1], m[2])
		}
		used[m[1]] = true
	}
	for _, p := range q.Params {
		if !used[p.Name] {
			return Query{}, fmt.Errorf("query %s: parameter %s declared but not used", name, p.Name)
		}
	}
	return q, nil
}

var placeholder = regexp.MustCompile(`\{([a-z_][a-z0-9_]*):([A-Za-z0-9]+)\}`)

// Bind returns the SQL with each parameter replaced by a literal of its
// value, checked against the declared type, and without comments or the
// final semicolon: one statement for the native protocol. Missing or
// unknown parameters are errors.
func (q Query) Bind(values map[string]string) (string, error) {
	lit := map[string]string{}
	for _, p := range q.Params {
		v, ok := values[p.Name]
		if !ok {
			return "", fmt.Errorf("query %s: parameter %s (%s) missing", q.Name, p.Name, p.Type)
		}
		l, err := literal(p.Type, v)
		if err != nil {
			return "", fmt.Errorf("query %s: parameter %s: %w", q.Name, p.Name, err)
		}
		lit[p.Name] = l
	}
	for k := range values {
		if _, ok := lit[k]; !ok {
			return "", fmt.Errorf("query %s: unknown parameter %s", q.Name, k)
		}
	}
	var b strings.Builder
	for line := range strings.Lines(q.SQL) {
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		b.WriteString(line)
	}
	sql := placeholder.ReplaceAllStringFunc(b.String(), func(s string) string {
		return lit[placeholder.FindStringSubmatch(s)[1]]
	})
	return strings.TrimSuffix(strings.TrimSpace(sql), ";"), nil
}

// literal renders v as a SQL literal of type typ.
func literal(typ, v string) (string, error) {
	switch {
	case typ == "String":
		r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
		return "'" + r.Replace(v) + "'", nil
	case strings.HasPrefix(typ, "UInt"):
		if _, err := strconv.ParseUint(v, 10, 64); err != nil {
			return "", fmt.Errorf("%q is not a %s", v, typ)
		}
		return v, nil
	case strings.HasPrefix(typ, "Int"):
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			return "", fmt.Errorf("%q is not an %s", v, typ)
		}
		return v, nil
	case strings.HasPrefix(typ, "Float"):
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return "", fmt.Errorf("%q is not a %s", v, typ)
		}
		return v, nil
	}
	return "", fmt.Errorf("type %s is not supported (String, UInt*, Int*, Float*)", typ)
}
