package chschema

import (
	"slices"
	"strings"
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

func TestFeaturesFor(t *testing.T) {
	tests := []struct {
		give    string
		want    Features
		wantErr bool
	}{
		{give: "18.16.1", want: Features{Version: "18.16.1"}},
		{give: "19.6.2.11", want: Features{Version: "19.6.2.11", TTL: true}},
		{give: "19.9.1", want: Features{Version: "19.9.1", TTL: true, LowCardinality: true}},
		{give: "24.8.4.13", want: Features{Version: "24.8.4.13", TTL: true, LowCardinality: true, DateTime64: true}},
		{give: "20.1", want: Features{Version: "20.1", TTL: true, LowCardinality: true, DateTime64: true}},
		{give: "", wantErr: true},
		{give: "24", wantErr: true},
		{give: "x.y.z", wantErr: true},
	}
	for _, tt := range tests {
		got, err := FeaturesFor(tt.give)
		if tt.wantErr {
			if err == nil {
				t.Errorf("FeaturesFor(%q) = %+v, want error", tt.give, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("FeaturesFor(%q) = %+v, %v, want %+v", tt.give, got, err, tt.want)
		}
	}
}

func TestRender(t *testing.T) {
	const src = "CREATE TABLE t (a {{lc \"String\"}}, b {{dt64 3}}) ENGINE = MergeTree() ORDER BY a\n" +
		"{{ttl \"b\" .RetentionDays}};\n{{if .TTL}}ALTER TABLE u MODIFY {{ttl \"c\" 7}};{{end}}\n"
	tests := []struct {
		name    string
		version string
		days    int
		want    []string
	}{
		{
			name: "18.16 without TTL", version: "18.16.1", days: 30,
			want: []string{"CREATE TABLE t (a String, b DateTime) ENGINE = MergeTree() ORDER BY a"},
		},
		{
			name: "24.8 with retention", version: "24.8.4.13", days: 30,
			want: []string{
				"CREATE TABLE t (a LowCardinality(String), b DateTime64(3)) ENGINE = MergeTree() ORDER BY a\nTTL b + INTERVAL 30 DAY",
				"ALTER TABLE u MODIFY TTL c + INTERVAL 7 DAY",
			},
		},
		{
			name: "24.8 keeping rows", version: "24.8.4.13", days: 0,
			want: []string{
				"CREATE TABLE t (a LowCardinality(String), b DateTime64(3)) ENGINE = MergeTree() ORDER BY a",
				"ALTER TABLE u MODIFY TTL c + INTERVAL 7 DAY",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := FeaturesFor(tt.version)
			if err != nil {
				t.Fatal(err)
			}
			f.RetentionDays = tt.days
			m, err := Migration{Name: "0001_t.sql", SQL: src}.Render(f)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Statements(); !slices.Equal(got, tt.want) {
				t.Errorf("Render(%s).Statements() = %q, want %q", tt.version, got, tt.want)
			}
		})
	}
}

func TestRender_Errors(t *testing.T) {
	for _, src := range []string{"{{if .TTL}}", "{{.NoSuchField}}", "{{nosuchfunc 1}}"} {
		if _, err := (Migration{Name: "0001_t.sql", SQL: src}).Render(Features{}); err == nil {
			t.Errorf("Render(%q) succeeded, want error", src)
		}
	}
}

// TestMigrations_Render renders every embedded file for the oldest and a
// current server: the templates must execute and the result must hold no
// template syntax. Running the 18.16 result is pkg/chstore's integration
// test; a current release is not available to the tests, so its SQL is
// checked here for the features it must use.
func TestMigrations_Render(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"18.16.1", "24.8.4.13"} {
		f, err := FeaturesFor(v)
		if err != nil {
			t.Fatal(err)
		}
		f.RetentionDays, f.RollupRetentionDays = 90, 400
		var all strings.Builder
		for _, m := range ms {
			r, err := m.Render(f)
			if err != nil {
				t.Fatalf("%s: %v", v, err)
			}
			if strings.Contains(r.SQL, "{{") {
				t.Errorf("%s: %s still holds template syntax", v, m.Name)
			}
			for _, s := range r.Statements() {
				all.WriteString(s + ";\n")
			}
		}
		sql := all.String()
		modern := f.TTL
		for _, feature := range []string{"LowCardinality(String)", "TTL minute + INTERVAL 400 DAY", "MODIFY TTL received + INTERVAL 90 DAY"} {
			if strings.Contains(sql, feature) != modern {
				t.Errorf("%s: rendered schema contains %q = %v, want %v", v, feature, !modern, modern)
			}
		}
	}
}

// TestTenantMinuteCounters keeps the zeros helper's list in step with the
// table 0004 creates.
func TestTenantMinuteCounters(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		if m.Name != "0004_rollup_tables.sql" {
			continue
		}
		table := m.SQL[strings.Index(m.SQL, "CREATE TABLE IF NOT EXISTS tenant_minute\n"):]
		table = table[:strings.Index(table, "ENGINE")]
		for line := range strings.Lines(table) {
			if f := strings.Fields(line); len(f) == 2 && f[1] == "UInt64," || len(f) == 2 && f[1] == "UInt64" {
				got = append(got, f[0])
			}
		}
	}
	if !slices.Equal(got, TenantMinuteCounters) {
		t.Errorf("tenant_minute counters in 0004 = %q, TenantMinuteCounters = %q", got, TenantMinuteCounters)
	}
}
