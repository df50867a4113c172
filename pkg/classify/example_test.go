package classify_test

import (
	"context"
	"fmt"
	"log"

	"github.com/outflowmail/outflow/pkg/classify"
)

func ExampleEngine_Classify() {
	e, err := classify.New(classify.DefaultConfig())
	if err != nil {
		log.Fatal(err)
	}
	msg := []byte("From: Billing <billing@example.com>\r\n" +
		"To: customer@example.org\r\n" +
		"Subject: Invoice\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nPlease find the invoice attached.\r\n" +
		"--b\r\nContent-Type: application/octet-stream; name=invoice.pdf.exe\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAA=\r\n--b--\r\n")
	v, err := e.Classify(context.Background(), msg)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(v.Label)
	for _, s := range v.Symbols {
		if s.Name == "ATTACH_EXECUTABLE" {
			fmt.Println(s.Name, s.Weight > 0)
		}
	}
	// Output:
	// malicious
	// ATTACH_EXECUTABLE true
}
