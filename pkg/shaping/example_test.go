package shaping_test

import (
	"fmt"
	"time"

	"github.com/outflowmail/outflow/pkg/shaping"
)

// A new source IP's cap toward each site on the days of its warm-up.
func ExampleWarmupConfig_Cap() {
	w := shaping.DefaultWarmup()
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, day := range []int{1, 2, 10, 44, 45} {
		c, capped := w.Cap(start, start.AddDate(0, 0, day-1).Add(12*time.Hour))
		fmt.Println(day, c, capped)
	}
	// Output:
	// 1 50 true
	// 2 100 true
	// 10 1500 true
	// 44 500000 true
	// 45 0 false
}
