//go:build cgo && openssl

package dkimsign

// RSA signatures through OpenSSL's libcrypto. Go's crypto/rsa takes 1.1–1.5
// ms for an RSA-2048 signature on the bench machine, OpenSSL 0.27 ms
// (`openssl speed rsa2048`); with one signature per message that was 45 % of
// Outflow's CPU at full load. PKCS #1 v1.5 signatures are deterministic, so
// both give the same bytes for the same key and digest
// (TestOpenSSL_SameSignatureAsGo), and a key OpenSSL cannot load, or a
// signature it fails to make, falls back to Go.
//
// Built with the "openssl" tag (the Makefile sets it when libcrypto's
// headers are installed: Debian's libssl-dev) and cgo; without them keys
// stay with Go (openssl_off.go).

/*
#cgo LDFLAGS: -lcrypto
#include <stdlib.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

static EVP_PKEY *outflow_load_rsa(const unsigned char *der, long len) {
	const unsigned char *p = der;
	return d2i_PrivateKey(EVP_PKEY_RSA, NULL, &p, len);
}

// Signs a SHA-256 digest (PKCS #1 v1.5); returns the signature's length, or
// 0 on any error.
static size_t outflow_sign_sha256(EVP_PKEY *key, const unsigned char *digest, size_t dlen,
		unsigned char *sig, size_t cap) {
	size_t siglen = cap;
	int ok = 0;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
	if (ctx == NULL)
		return 0;
	if (EVP_PKEY_sign_init(ctx) > 0 &&
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0 &&
	    EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) > 0 &&
	    EVP_PKEY_sign(ctx, sig, &siglen, digest, dlen) > 0)
		ok = 1;
	EVP_PKEY_CTX_free(ctx);
	return ok ? siglen : 0;
}
*/
import "C"

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"io"
	"runtime"
	"unsafe"
)

// opensslRSA signs SHA-256 digests with an RSA key held by libcrypto; any
// other request goes to the Go key.
type opensslRSA struct {
	*rsa.PrivateKey
	pkey *C.EVP_PKEY
}

// fastSigner returns k backed by OpenSSL when k is an RSA key libcrypto
// accepts, and k itself otherwise.
func fastSigner(k crypto.Signer) crypto.Signer {
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return k
	}
	der := x509.MarshalPKCS1PrivateKey(rk)
	pkey := C.outflow_load_rsa((*C.uchar)(unsafe.Pointer(&der[0])), C.long(len(der)))
	clear(der)
	if pkey == nil {
		return k
	}
	o := &opensslRSA{PrivateKey: rk, pkey: pkey}
	// Tenant keys are dropped from the cache when they expire; the C key
	// goes with its wrapper.
	runtime.AddCleanup(o, func(p *C.EVP_PKEY) { C.EVP_PKEY_free(p) }, pkey)
	return o
}

// Sign implements crypto.Signer.
func (o *opensslRSA) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil || opts.HashFunc() != crypto.SHA256 || len(digest) != crypto.SHA256.Size() {
		return o.PrivateKey.Sign(rand, digest, opts)
	}
	if _, pss := opts.(*rsa.PSSOptions); pss {
		return o.PrivateKey.Sign(rand, digest, opts)
	}
	sig := make([]byte, o.Size())
	n := C.outflow_sign_sha256(o.pkey, (*C.uchar)(unsafe.Pointer(&digest[0])), C.size_t(len(digest)),
		(*C.uchar)(unsafe.Pointer(&sig[0])), C.size_t(len(sig)))
	runtime.KeepAlive(o)
	if n == 0 || int(n) != len(sig) {
		return o.PrivateKey.Sign(rand, digest, opts)
	}
	return sig, nil
}

// signsWithOpenSSL reports whether k's signatures are made by libcrypto.
func signsWithOpenSSL(k crypto.Signer) bool {
	_, ok := k.(*opensslRSA)
	return ok
}
