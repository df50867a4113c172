package chqueries

import (
	"strings"
	"testing"
)

func TestAll_Parse(t *testing.T) {
	qs, err := All()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"bounce_reasons", "complaint_sources", "message_trace", "pool_health", "tenant_abuse_leaderboard"}
	if len(qs) != len(want) {
		t.Fatalf("All() = %d queries, want %d", len(qs), len(want))
	}
	for i, q := range qs {
		if q.Name != want[i] {
			t.Errorf("query %d = %s, want %s", i, q.Name, want[i])
		}
		if q.Title == "" || q.Doc == "" {
			t.Errorf("query %s: header without title or description", q.Name)
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		wantErr string
	}{
		{"ok", "-- T\n-- param n UInt32: count\nSELECT {n:UInt32}", ""},
		{"no title", "SELECT 1", "no title"},
		{"undeclared", "-- T\nSELECT {n:UInt32}", "not declared"},
		{"wrong type", "-- T\n-- param n String: x\nSELECT {n:UInt32}", "not declared"},
		{"unused", "-- T\n-- param n String: x\nSELECT 1", "not used"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("q", tt.give)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Parse(%q) = %v, want nil", tt.give, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Parse(%q) = %v, want error containing %q", tt.give, err, tt.wantErr)
			}
		})
	}
}

func TestBind(t *testing.T) {
	q, err := Parse("q", "-- T\n-- param id String: id\n-- param n UInt32: n\n-- a comment\nSELECT {id:String}, {n:UInt32}, {id:String};\n")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		give    map[string]string
		want    string
		wantErr string
	}{
		{give: map[string]string{"id": "a", "n": "5"}, want: "SELECT 'a', 5, 'a'"},
		{give: map[string]string{"id": `x' OR 1=1 --\`, "n": "0"}, want: `SELECT 'x\' OR 1=1 --\\', 0, 'x\' OR 1=1 --\\'`},
		{give: map[string]string{"id": "a"}, wantErr: "n (UInt32) missing"},
		{give: map[string]string{"id": "a", "n": "-1"}, wantErr: "is not a UInt32"},
		{give: map[string]string{"id": "a", "n": "1; DROP TABLE x"}, wantErr: "is not a UInt32"},
		{give: map[string]string{"id": "a", "n": "1", "extra": "1"}, wantErr: "unknown parameter extra"},
	}
	for _, tt := range tests {
		got, err := q.Bind(tt.give)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Bind(%q) = %q, %v, want error containing %q", tt.give, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Bind(%q) = %q, %v, want %q", tt.give, got, err, tt.want)
		}
	}
}
