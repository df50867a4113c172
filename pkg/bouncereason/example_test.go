package bouncereason_test

import (
	"fmt"

	"github.com/outflowmail/outflow/pkg/bouncereason"
)

func ExampleFromReply() {
	r := bouncereason.FromReply(550, "5.1.1", "<nobody@example.org>: Recipient address rejected: User unknown")
	fmt.Println(r, bouncereason.Hard(r))
	// Output: userunknown true
}
