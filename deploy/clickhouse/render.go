package chschema

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/template"
)

// Features says what the server supports and how long data is kept; a
// migration's template decides its SQL from it.
type Features struct {
	// Version is the server's version string, as SELECT version() answers.
	Version string
	// TTL: table TTL clauses and ALTER TABLE ... MODIFY TTL (19.6).
	TTL bool
	// LowCardinality: the LowCardinality(T) type without experimental
	// settings (19.9).
	LowCardinality bool
	// DateTime64: the DateTime64(precision) type (20.1).
	DateTime64 bool
	// RetentionDays is how long raw event rows are kept; 0 keeps them.
	RetentionDays int
	// RollupRetentionDays is how long rollup rows are kept; 0 keeps them.
	RollupRetentionDays int
}

// TenantMinuteCounters are the counter columns of the tenant_minute rollup
// (0004), in table order; the zeros template helper fills them.
var TenantMinuteCounters = []string{
	"messages", "rcpts", "verdicts", "clean", "suspect", "spam", "malicious", "attempts", "delivered",
	"deferred", "bounced", "expired", "hard_bounces", "soft_bounces", "blocked", "complaints", "suppressed",
}

// Feature thresholds: the first release where each is usable as plain SQL.
var (
	ttlSince            = [2]int{19, 6}
	lowCardinalitySince = [2]int{19, 9}
	dateTime64Since     = [2]int{20, 1}
)

// FeaturesFor derives the features of a server from its version string
// ("18.16.1", "24.8.4.13"). Retention is left for the caller to set.
func FeaturesFor(version string) (Features, error) {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return Features{}, fmt.Errorf("clickhouse version %q: want MAJOR.MINOR[.PATCH...]", version)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || major < 0 || minor < 0 {
		return Features{}, fmt.Errorf("clickhouse version %q: want MAJOR.MINOR[.PATCH...]", version)
	}
	atLeast := func(v [2]int) bool { return major > v[0] || major == v[0] && minor >= v[1] }
	return Features{
		Version:        version,
		TTL:            atLeast(ttlSince),
		LowCardinality: atLeast(lowCardinalitySince),
		DateTime64:     atLeast(dateTime64Since),
	}, nil
}

// templateFuncs are the helpers a migration may call besides the Features
// fields. They close over f so that a file reads `{{lc "String"}}`.
func templateFuncs(f Features) template.FuncMap {
	return template.FuncMap{
		// lc is LowCardinality(T) where supported, else T.
		"lc": func(typ string) string {
			if f.LowCardinality {
				return "LowCardinality(" + typ + ")"
			}
			return typ
		},
		// dt64 is DateTime64(precision) where supported, else DateTime
		// (whole seconds).
		"dt64": func(precision int) string {
			if f.DateTime64 {
				return "DateTime64(" + strconv.Itoa(precision) + ")"
			}
			return "DateTime"
		},
		// zeros fills the rest of a tenant_minute row in a view's SELECT:
		// "toUInt64(0) AS c" for each counter not named, one per line, each
		// preceded by a comma. 18.16 wants every target column selected.
		"zeros": func(filled ...string) string {
			var b strings.Builder
			for _, c := range TenantMinuteCounters {
				if !slices.Contains(filled, c) {
					b.WriteString(",\n    toUInt64(0) AS " + c)
				}
			}
			return b.String()
		},
		// ttl is a table TTL clause keeping rows days after column, or
		// nothing when the server has no TTL or days is 0.
		"ttl": func(column string, days int) string {
			if !f.TTL || days <= 0 {
				return ""
			}
			return "TTL " + column + " + INTERVAL " + strconv.Itoa(days) + " DAY"
		},
	}
}

// Render executes the migration's text as a text/template over f and
// returns the migration with the resulting SQL. A file without template
// actions renders to itself.
func (m Migration) Render(f Features) (Migration, error) {
	t, err := template.New(m.Name).Funcs(templateFuncs(f)).Option("missingkey=error").Parse(m.SQL)
	if err != nil {
		return Migration{}, fmt.Errorf("migration %s: %w", m.Name, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, f); err != nil {
		return Migration{}, fmt.Errorf("migration %s: %w", m.Name, err)
	}
	m.SQL = b.String()
	return m, nil
}
