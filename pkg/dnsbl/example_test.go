package dnsbl_test

import (
	"fmt"
	"net/netip"

	"github.com/outflowmail/outflow/pkg/dnsbl"
)

// The name a blocklist zone answers for an address (RFC 5782 2.1).
func ExampleQueryName() {
	fmt.Println(dnsbl.QueryName(netip.MustParseAddr("192.0.2.99"), "zen.spamhaus.org"))
	// Output: 99.2.0.192.zen.spamhaus.org.
}
