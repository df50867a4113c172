package tlspolicy_test

import (
	"fmt"

	"github.com/outflowmail/outflow/pkg/tlspolicy"
)

func ExampleParsePolicy() {
	p, err := tlspolicy.ParsePolicy([]byte("version: STSv1\r\nmode: enforce\r\nmx: *.mail.example.net\r\nmax_age: 604800\r\n"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p.Mode, p.MaxAge, p.Matches("mx1.mail.example.net"), p.Matches("mail.example.net"))
	// Output: enforce 168h0m0s true false
}
