package shaping

import "testing"

// FuzzRules feeds remote replies (outside input) to the shipped rules:
// matching must never panic, whatever the code, enhanced status or text.
func FuzzRules(f *testing.F) {
	k, err := compile(DefaultConfig())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(421, "4.7.28", "unusual rate of unsolicited mail originating from your IP address")
	f.Add(554, "5.7.1", "blocked using zen.spamhaus.org")
	f.Add(0, "", "")
	f.Add(-5, "5..", "[TS03]")
	f.Add(4210, "4.7.650.1.2", "\xff\xfe")
	f.Fuzz(func(t *testing.T, code int, enhanced, text string) {
		for i := range k.rules {
			k.rules[i].matches(code, enhanced, text)
		}
	})
}
