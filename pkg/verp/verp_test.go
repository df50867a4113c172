package verp

import (
	"errors"
	"strings"
	"testing"
)

func testCodec(t testing.TB, perRcpt bool, secrets ...string) *Codec {
	t.Helper()
	if len(secrets) == 0 {
		secrets = []string{"0123456789abcdef-new"}
	}
	c, err := New(Config{Domain: "bounce.outflow.example", Secrets: secrets, PerRecipient: perRcpt})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		perRcpt bool
		give    Token
		want    Token
	}{
		{"hex id with recipient", true,
			Token{MsgID: "0123456789abcdef0123456789abcdef", Tenant: "demo", Rcpt: "Bob.Smith@Example.NET"},
			Token{MsgID: "0123456789abcdef0123456789abcdef", Tenant: "demo", Rcpt: "Bob.Smith@Example.NET"}},
		{"other id form", true,
			Token{MsgID: "msg-1.x", Tenant: "acme_co", Rcpt: "a@b.c"},
			Token{MsgID: "msg-1.x", Tenant: "acme_co", Rcpt: "a@b.c"}},
		{"upper-case hex id kept verbatim", true,
			Token{MsgID: "0123456789ABCDEF0123456789ABCDEF", Tenant: "t", Rcpt: "x@y.z"},
			Token{MsgID: "0123456789ABCDEF0123456789ABCDEF", Tenant: "t", Rcpt: "x@y.z"}},
		{"per message drops the recipient", false,
			Token{MsgID: "0123456789abcdef0123456789abcdef", Tenant: "demo", Rcpt: "bob@example.net"},
			Token{MsgID: "0123456789abcdef0123456789abcdef", Tenant: "demo"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testCodec(t, tt.perRcpt)
			addr, err := c.Address(tt.give)
			if err != nil {
				t.Fatal(err)
			}
			local := addr[:strings.IndexByte(addr, '@')]
			if !isDotAtom(local) {
				t.Errorf("local part %q is not a dot-atom", local)
			}
			// Receivers may fold the case of the whole address.
			for _, a := range []string{addr, strings.ToUpper(addr), "<" + strings.ToLower(addr) + ">"} {
				got, err := c.Decode(a)
				if err != nil || got != tt.want {
					t.Errorf("Decode(%q) = %+v, %v, want %+v", a, got, err, tt.want)
				}
			}
		})
	}
}

func isDotAtom(s string) bool {
	// Our tokens use only atext characters (RFC 5322 3.2.3) and no dots.
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '+') {
			return false
		}
	}
	return s != ""
}

func TestPerMessageTokenLength(t *testing.T) {
	c := testCodec(t, false)
	addr, _ := c.Address(Token{MsgID: "0123456789abcdef0123456789abcdef", Tenant: "demo"})
	// RFC 5321 4.5.3.1.1: a local part of at most 64 octets is the one every
	// receiver must accept.
	if local := addr[:strings.IndexByte(addr, '@')]; len(local) > 64 {
		t.Errorf("per-message local part %q is %d octets, want <= 64", local, len(local))
	}
}

func TestDecode_Errors(t *testing.T) {
	c := testCodec(t, true)
	good, err := c.Address(Token{MsgID: "0123456789abcdef0123456789abcdef", Tenant: "demo", Rcpt: "bob@example.net"})
	if err != nil {
		t.Fatal(err)
	}
	local, domain, _ := strings.Cut(good, "@")
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	tests := []struct {
		name string
		give string
		want error
	}{
		{"other domain", local + "@example.org", ErrNotOurs},
		{"no prefix", "postmaster@" + domain, ErrNotOurs},
		{"no at sign", local, ErrNotOurs},
		{"tampered payload", flip(local, len(Prefix)+10) + "@" + domain, ErrBadMAC},
		{"tampered mac", flip(local, len(local)-2) + "@" + domain, ErrBadMAC},
		{"truncated", local[:len(local)-5] + "@" + domain, nil}, // malformed or bad MAC, never accepted
		{"not base32", Prefix + "hello!world@" + domain, ErrMalformed},
		{"empty token", Prefix + "@" + domain, ErrMalformed},
		{"wrong version", Prefix + b32.EncodeToString([]byte{9, 0, 1, 'a', 1, 'b', 1, 2, 3, 4, 5, 6, 7, 8}) + "@" + domain, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Decode(tt.give)
			if err == nil {
				t.Fatalf("Decode(%q) = %+v, want an error", tt.give, got)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Decode(%q) error %v, want %v", tt.give, err, tt.want)
			}
			if errors.Is(err, ErrNotOurs) && tt.want != ErrNotOurs {
				t.Errorf("Decode(%q) says not ours, want forged", tt.give)
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	tok := Token{MsgID: "0123456789abcdef0123456789abcdef", Tenant: "demo", Rcpt: "bob@example.net"}
	old := testCodec(t, true, "old-secret-0123456789")
	addr, _ := old.Address(tok)

	rotated := testCodec(t, true, "new-secret-0123456789", "old-secret-0123456789")
	if got, err := rotated.Decode(addr); err != nil || got != tok {
		t.Errorf("rotated codec: Decode(old token) = %+v, %v, want %+v", got, err, tok)
	}
	newAddr, _ := rotated.Address(tok)
	if newAddr == addr {
		t.Error("rotated codec still signs with the old secret")
	}
	if _, err := old.Decode(newAddr); !errors.Is(err, ErrBadMAC) {
		t.Errorf("old codec: Decode(new token) error %v, want ErrBadMAC", err)
	}
	retired := testCodec(t, true, "new-secret-0123456789")
	if _, err := retired.Decode(addr); !errors.Is(err, ErrBadMAC) {
		t.Errorf("after retiring the old secret: error %v, want ErrBadMAC", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		give    Config
		wantErr string
	}{
		{Config{}, ""},
		{Config{Domain: "bounce.example", Secrets: []string{"0123456789abcdef"}}, ""},
		{Config{Domain: "bounce.example"}, "verp.secrets"},
		{Config{Domain: "bounce.example", Secrets: []string{"short"}}, "verp.secrets[0]"},
		{Config{Domain: "Bounce.Example", Secrets: []string{"0123456789abcdef"}}, "verp.domain"},
		{Config{Domain: "localhost", Secrets: []string{"0123456789abcdef"}}, "verp.domain"},
	}
	for _, tt := range tests {
		err := tt.give.Validate()
		if (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Validate(%+v) = %v, want error naming %q", tt.give, err, tt.wantErr)
		}
	}
}

func TestAddress_BadToken(t *testing.T) {
	c := testCodec(t, true)
	for _, tok := range []Token{{Tenant: "demo"}, {MsgID: "x"}, {MsgID: "x", Tenant: "t", Rcpt: strings.Repeat("a", 300)}} {
		if addr, err := c.Address(tok); err == nil {
			t.Errorf("Address(%+v) = %q, want an error", tok, addr)
		}
	}
}

func FuzzDecode(f *testing.F) {
	c := testCodec(f, true)
	good, _ := c.Address(Token{MsgID: "0123456789abcdef0123456789abcdef", Tenant: "demo", Rcpt: "bob@example.net"})
	f.Add(good)
	f.Add(Prefix + "aaaa@bounce.outflow.example")
	f.Add("bob@example.net")
	f.Fuzz(func(t *testing.T, addr string) {
		tok, err := c.Decode(addr)
		if err != nil {
			return
		}
		// Whatever decodes must be a token we signed: re-encoding it gives
		// an address that decodes to the same token.
		again, err := c.Address(tok)
		if err != nil {
			t.Fatalf("Decode(%q) = %+v, which Address rejects: %v", addr, tok, err)
		}
		if got, err := c.Decode(again); err != nil || got != tok {
			t.Fatalf("round trip of %+v: %+v, %v", tok, got, err)
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	c := testCodec(f, true)
	f.Add("0123456789abcdef0123456789abcdef", "demo", "bob@example.net")
	f.Add("id", "t", "")
	f.Fuzz(func(t *testing.T, id, tenant, rcpt string) {
		tok := Token{MsgID: id, Tenant: tenant, Rcpt: rcpt}
		addr, err := c.Address(tok)
		if err != nil {
			return
		}
		for _, a := range []string{addr, strings.ToUpper(addr), strings.ToLower(addr)} {
			if got, err := c.Decode(a); err != nil || got != tok {
				t.Fatalf("Decode(%q) = %+v, %v, want %+v", a, got, err, tok)
			}
		}
	})
}
