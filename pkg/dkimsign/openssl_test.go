//go:build cgo && openssl

package dkimsign

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"
)

func TestOpenSSL_SameSignatureAsGo(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, RSABits)
	if err != nil {
		t.Fatal(err)
	}
	fast := fastSigner(k)
	if !signsWithOpenSSL(fast) {
		t.Fatal("an RSA-2048 key was not loaded into OpenSSL")
	}
	for i := range 50 {
		digest := sha256.Sum256([]byte{byte(i), 'x'})
		want, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		got, err := fast.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("digest %d: OpenSSL and Go signatures differ", i)
		}
		if err := rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, digest[:], got); err != nil {
			t.Fatalf("digest %d: %v", i, err)
		}
	}
}

// What OpenSSL is not asked to do still works, through Go.
func TestOpenSSL_OtherRequestsGoToGo(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, RSABits)
	if err != nil {
		t.Fatal(err)
	}
	fast := fastSigner(k)
	digest := sha256.Sum256([]byte("pss"))
	sig, err := fast.Sign(rand.Reader, digest[:], &rsa.PSSOptions{Hash: crypto.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPSS(&k.PublicKey, crypto.SHA256, digest[:], sig, nil); err != nil {
		t.Errorf("PSS: %v", err)
	}
	if _, err := fast.Sign(rand.Reader, digest[:16], crypto.SHA256); err == nil {
		t.Error("a 16-byte SHA-256 digest was signed")
	}
	_, ek, _ := ed25519.GenerateKey(rand.Reader)
	if signsWithOpenSSL(fastSigner(ek)) {
		t.Error("an Ed25519 key went to OpenSSL")
	}
}

func TestNew_ProviderRSAKeyByOpenSSL(t *testing.T) {
	s, err := New(providerFiles(t, dnsKeys{}, false), nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !signsWithOpenSSL(s.provider[0].key) {
		t.Errorf("provider key signs with %s, want openssl", rsaImplementation(s.provider[0].key))
	}
}

// BenchmarkRSASign compares one RSA-2048 signature of a SHA-256 digest in
// Go and in OpenSSL.
func BenchmarkRSASign(b *testing.B) {
	k, err := rsa.GenerateKey(rand.Reader, RSABits)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("bench"))
	for _, bc := range []struct {
		name string
		s    crypto.Signer
	}{{"go", k}, {"openssl", fastSigner(k)}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := bc.s.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
