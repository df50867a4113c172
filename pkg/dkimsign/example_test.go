package dkimsign_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/outflowmail/outflow/pkg/dkimsign"
)

func Example() {
	dir, _ := os.MkdirTemp("", "dkim-example")
	defer os.RemoveAll(dir)
	cfg := dkimsign.DefaultConfig()
	cfg.ProviderDomain, cfg.Selector = "outflow.example", "of1"
	cfg.KeyFile = filepath.Join(dir, "of1.pem")
	cfg.CreateKeys = true // development: make the key file (mode 0600) if missing

	// No KV bucket: provider signature only.
	s, err := dkimsign.New(cfg, nil, dkimsign.Options{})
	if err != nil {
		panic(err)
	}
	msg := []byte("From: a@tenant.example\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nhello\r\n")
	signed, sigs, err := s.Sign(context.Background(), "demo", msg)
	if err != nil {
		panic(err)
	}
	fmt.Println(sigs, bytes.HasPrefix(signed, []byte("DKIM-Signature: ")), bytes.HasSuffix(signed, msg))
	// Output: [{outflow.example of1 rsa}] true true
}
