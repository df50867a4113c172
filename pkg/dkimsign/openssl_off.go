//go:build !cgo || !openssl

package dkimsign

import "crypto"

// fastSigner returns k: this build signs with Go's crypto (openssl.go says
// when libcrypto is used instead).
func fastSigner(k crypto.Signer) crypto.Signer { return k }

// signsWithOpenSSL reports whether k's signatures are made by libcrypto.
func signsWithOpenSSL(crypto.Signer) bool { return false }
