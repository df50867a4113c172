package dkimsign

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
)

// Algo is a DKIM key algorithm.
type Algo string

// Key algorithms: RSA-2048 (RFC 6376; every verifier knows it) and Ed25519
// (RFC 8463; small keys, but not yet verified everywhere, so it is only ever
// an extra signature beside an RSA one).
const (
	RSA     Algo = "rsa"
	Ed25519 Algo = "ed25519"
)

// RSABits is the size of generated RSA keys (RFC 8301 3.2: at least 1024,
// 2048 recommended; longer keys no longer fit one DNS TXT string anyway).
const RSABits = 2048

// ParseAlgo reads "rsa" or "ed25519".
func ParseAlgo(s string) (Algo, error) {
	switch a := Algo(s); a {
	case RSA, Ed25519:
		return a, nil
	}
	return "", fmt.Errorf("dkim algorithm %q: want rsa or ed25519", s)
}

var selectorRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidSelector checks a selector: one lower-case DNS label, so that it can
// be the last dot-separated part of a KV key.
func ValidSelector(s string) error {
	if !selectorRE.MatchString(s) {
		return fmt.Errorf("dkim selector %q: must be one lower-case DNS label", s)
	}
	return nil
}

// Generate makes a new private key.
func Generate(algo Algo) (crypto.Signer, error) {
	switch algo {
	case RSA:
		return rsa.GenerateKey(rand.Reader, RSABits)
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("dkim algorithm %q: want rsa or ed25519", algo)
}

// MarshalPrivateKey encodes a key as PKCS #8 PEM.
func MarshalPrivateKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("marshal dkim key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKey reads a PEM private key: PKCS #8 (RSA or Ed25519) or
// PKCS #1 ("RSA PRIVATE KEY", what openssl genrsa wrote for years).
func ParsePrivateKey(b []byte) (crypto.Signer, Algo, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, "", errors.New("dkim key: no PEM block")
	}
	var (
		k   any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, "", fmt.Errorf("dkim key: PEM type %q, want PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, "", fmt.Errorf("dkim key: %w", err)
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 1024 {
			// RFC 8301 3.2: verifiers must not accept shorter keys.
			return nil, "", fmt.Errorf("dkim key: RSA %d bits, want at least 1024", k.N.BitLen())
		}
		return k, RSA, nil
	case ed25519.PrivateKey:
		return k, Ed25519, nil
	}
	return nil, "", fmt.Errorf("dkim key: unsupported key type %T", k)
}

// RecordName is the DNS name of a key's TXT record (RFC 6376 3.6.2.1).
func RecordName(selector, domain string) string {
	return selector + "._domainkey." + domain
}

// TXTRecord is the DNS TXT value publishing pub (RFC 6376 3.6.1; for
// Ed25519 the raw 32-byte key, RFC 8463 4.2).
func TXTRecord(pub crypto.PublicKey) (string, error) {
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", fmt.Errorf("marshal dkim public key: %w", err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
	}
	return "", fmt.Errorf("dkim public key: unsupported type %T", pub)
}

// SplitTXT splits a TXT value into character-strings of at most 255 bytes
// (RFC 1035 3.3.14); a verifier concatenates them (RFC 6376 3.6.2.2).
func SplitTXT(v string) []string {
	var out []string
	for len(v) > 255 {
		out = append(out, v[:255])
		v = v[255:]
	}
	return append(out, v)
}

// ErrKeyFileMode: the provider key file is readable by others.
var ErrKeyFileMode = errors.New("dkimsign: key file readable by group or others; chmod 600 it")

// LoadKeyFile reads a PEM private key from a file that only its owner may
// read (mode 0600 or stricter).
func LoadKeyFile(path string) (crypto.Signer, Algo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, "", fmt.Errorf("%s: mode %04o: %w", path, fi.Mode().Perm(), ErrKeyFileMode)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	k, algo, err := ParsePrivateKey(b)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return k, algo, nil
}

// CreateKeyFile writes a new key of algo to path with mode 0600, unless the
// file exists already (then it reports fs.ErrExist).
func CreateKeyFile(path string, algo Algo) (crypto.Signer, error) {
	k, err := Generate(algo)
	if err != nil {
		return nil, err
	}
	b, err := MarshalPrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, err
	}
	return k, nil
}
