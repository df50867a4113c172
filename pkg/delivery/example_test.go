package delivery_test

import (
	"context"
	"fmt"
	"time"

	"github.com/outflowmail/outflow/pkg/delivery"
	"github.com/outflowmail/outflow/pkg/pool"
	"github.com/outflowmail/outflow/pkg/resolver"
)

func ExampleDeliverer_Deliver() {
	r, err := resolver.New("", 5*time.Second) // the system's nameserver
	if err != nil {
		panic(err)
	}
	d := delivery.New(delivery.Options{Resolver: r})
	res := d.Deliver(context.Background(), delivery.Job{
		Domain:  "example.net",
		From:    "bounces+1@outflow.example",
		Rcpts:   []string{"b@example.net"},
		Body:    []byte("Subject: hi\r\n\r\nhello\r\n"),
		Sources: []pool.IP{{Address: "192.0.2.25", EHLO: "out1.outflow.example"}},
	})
	for _, rr := range res.Rcpts {
		switch {
		case rr.Err == nil:
			fmt.Println(rr.Rcpt, "delivered by", res.MX)
		case rr.Err.Permanent:
			fmt.Println(rr.Rcpt, "bounced:", rr.Err)
		default:
			fmt.Println(rr.Rcpt, "try again later:", rr.Err)
		}
	}
}
