package chschema

import (
	"slices"
	"testing"
	"testing/fstest"
)

func TestMigrations_Ordered(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no embedded migrations")
	}
	for i, m := range ms {
		if i > 0 && m.Version <= ms[i-1].Version {
			t.Errorf("migration %s (v%d) after %s (v%d)", m.Name, m.Version, ms[i-1].Name, ms[i-1].Version)
		}
		if len(m.Statements()) == 0 {
			t.Errorf("migration %s has no statements", m.Name)
		}
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name      string
		give      fstest.MapFS
		wantNames []string
		wantErr   bool
	}{
		{
			name: "sorted by number",
			give: fstest.MapFS{
				"0010_b.sql": {Data: []byte("SELECT 2;")},
				"0002_a.sql": {Data: []byte("SELECT 1;")},
				"README.md":  {Data: []byte("not sql")},
			},
			wantNames: []string{"0002_a.sql", "0010_b.sql"},
		},
		{name: "no prefix", give: fstest.MapFS{"init.sql": {}}, wantErr: true},
		{name: "not a number", give: fstest.MapFS{"x1_a.sql": {}}, wantErr: true},
		{name: "zero", give: fstest.MapFS{"0000_a.sql": {}}, wantErr: true},
		{name: "duplicate version", give: fstest.MapFS{"1_a.sql": {}, "0001_b.sql": {}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := Load(tt.give)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Load = %v, want error", ms)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, m := range ms {
				names = append(names, m.Name)
			}
			if !slices.Equal(names, tt.wantNames) {
				t.Errorf("Load names = %q, want %q", names, tt.wantNames)
			}
		})
	}
}

func TestStatements(t *testing.T) {
	tests := []struct {
		give string
		want []string
	}{
		{give: "", want: nil},
		{give: "-- only a comment\n", want: nil},
		{give: "CREATE TABLE t\n(\n  a String\n);\n", want: []string{"CREATE TABLE t\n(\n  a String\n)"}},
		{
			give: "-- two\nSELECT 1;\n\n-- more\nSELECT 2;\nSELECT 3",
			want: []string{"SELECT 1", "SELECT 2", "SELECT 3"},
		},
	}
	for _, tt := range tests {
		got := Migration{SQL: tt.give}.Statements()
		if !slices.Equal(got, tt.want) {
			t.Errorf("Statements(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}
