package events

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestUnmarshalAll(t *testing.T) {
	one := func(id string) []byte {
		b, err := Marshal(&Event{ID: id, Type: TypeVerdict, Time: time.Unix(1, 0).UTC(), Tenant: "t", Verdict: &Verdict{Score: 1, Label: "clean"}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name    string
		give    []byte
		wantIDs []string
		wantErr string
	}{
		{"single event", one("a"), []string{"a"}, ""},
		{"batch", bytes.Join([][]byte{one("a"), one("b"), one("c")}, []byte("\n")), []string{"a", "b", "c"}, ""},
		{"trailing newline", append(one("a"), '\n'), []string{"a"}, ""},
		{"empty", nil, nil, "empty payload"},
		{"bad line", bytes.Join([][]byte{one("a"), []byte("{nope")}, []byte("\n")), nil, "event 2 of the batch"},
		{"future version", []byte(`{"v":99,"id":"x","type":"verdict"}`), nil, "unsupported version 99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := UnmarshalAll(tt.give)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, e := range evs {
				ids = append(ids, e.ID)
			}
			if strings.Join(ids, ",") != strings.Join(tt.wantIDs, ",") {
				t.Errorf("ids = %v, want %v", ids, tt.wantIDs)
			}
		})
	}
}
