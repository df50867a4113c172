package tlsrpt_test

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/tlsrpt"
)

func ExampleBuild() {
	day := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	results := []events.TLS{
		{PolicyDomain: "example.net", PolicyType: events.TLSPolicyNone, Result: events.TLSSuccess, MX: "mx.example.net"},
		{PolicyDomain: "example.net", PolicyType: events.TLSPolicyNone, Result: "starttls-not-supported",
			MX: "mx.example.net", SendingIP: "192.0.2.1", ReceivingIP: "198.51.100.7"},
	}
	r := tlsrpt.Build(tlsrpt.Org{Name: "Outflow", Contact: "mailto:tlsrpt@provider.example"}, day, results)["example.net"]
	b, _ := json.Marshal(r.Policies)
	fmt.Println(string(b))
	// Output: [{"policy":{"policy-type":"no-policy-found","policy-domain":"example.net"},"summary":{"total-successful-session-count":1,"total-failure-session-count":1},"failure-details":[{"result-type":"starttls-not-supported","sending-mta-ip":"192.0.2.1","receiving-mx-hostname":"mx.example.net","receiving-ip":"198.51.100.7","failed-session-count":1}]}]
}
