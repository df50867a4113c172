package verp_test

import (
	"errors"
	"fmt"

	"github.com/outflowmail/outflow/pkg/verp"
)

func Example() {
	c, err := verp.New(verp.Config{
		Domain:       "bounce.outflow.example",
		Secrets:      []string{"newest-secret-signs-0123", "older-secret-still-verifies"},
		PerRecipient: true,
	})
	if err != nil {
		panic(err)
	}
	// The sender: one return path per recipient.
	rp, _ := c.Address(verp.Token{MsgID: "0123456789abcdef0123456789abcdef", Tenant: "demo", Rcpt: "bob@example.net"})

	// The MX listener: attribute a bounce, or tell a forgery.
	tok, err := c.Decode(rp)
	fmt.Println(tok.MsgID, tok.Tenant, tok.Rcpt, err)
	_, err = c.Decode("bounces+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@bounce.outflow.example")
	fmt.Println(errors.Is(err, verp.ErrBadMAC) || errors.Is(err, verp.ErrMalformed), errors.Is(err, verp.ErrNotOurs))
	_, err = c.Decode("postmaster@example.org")
	fmt.Println(errors.Is(err, verp.ErrNotOurs))
	// Output:
	// 0123456789abcdef0123456789abcdef demo bob@example.net <nil>
	// true false
	// true
}
