package chqueries

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Querier runs a query; a chstore connection (driver.Conn) is one.
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
}

// Result is a query's answer, every value as text.
type Result struct {
	Columns []string
	Rows    [][]string
}

// Run binds params and runs the query, returning its rows as text: times
// in UTC as 2006-01-02 15:04:05, numbers and strings as they are.
func (q Query) Run(ctx context.Context, conn Querier, params map[string]string) (Result, error) {
	sql, err := q.Bind(params)
	if err != nil {
		return Result{}, err
	}
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return Result{}, fmt.Errorf("query %s: %w", q.Name, err)
	}
	defer rows.Close()
	res := Result{Columns: rows.Columns()}
	types := rows.ColumnTypes()
	for rows.Next() {
		dest := make([]any, len(types))
		for i, ct := range types {
			dest[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(dest...); err != nil {
			return Result{}, fmt.Errorf("query %s: %w", q.Name, err)
		}
		row := make([]string, len(dest))
		for i, d := range dest {
			row[i] = text(reflect.ValueOf(d).Elem().Interface())
		}
		res.Rows = append(res.Rows, row)
	}
	if err := rows.Err(); err != nil {
		return Result{}, fmt.Errorf("query %s: %w", q.Name, err)
	}
	return res, nil
}

func text(v any) string {
	switch v := v.(type) {
	case time.Time:
		return v.UTC().Format(time.DateTime)
	case []string:
		return strings.Join(v, ",")
	}
	return fmt.Sprint(v)
}

// Table renders the result as aligned columns under a header line.
func (r Result) Table() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, strings.Join(r.Columns, "\t"))
	for _, row := range r.Rows {
		fmt.Fprintln(w, strings.Join(row, "\t"))
	}
	w.Flush()
	return b.String()
}
