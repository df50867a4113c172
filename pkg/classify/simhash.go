package classify

import (
	"strconv"

	"github.com/outflowmail/outflow/pkg/mailparse"
)

// fingerprint is a 64-bit simhash (Charikar) of the body's word 3-shingles:
// each shingle's hash votes on every bit, and the sign of the sum is the bit.
// Near-identical bodies (one campaign with per-recipient names or tracking
// codes) differ in few bits, so analytics can group them by Hamming distance.
// Words are lowercased letter and digit runs, so markup, case and spacing do
// not matter.
func fingerprint(m *mailparse.Message) string {
	text := m.Text
	if len(text) < 64 && len(m.HTMLText) > len(text) {
		text = m.HTMLText
	}
	var votes [64]int32
	var ring [3]uint64
	n := 0
	buf := make([]byte, 0, 32)
	scanWords(text, buf, func(tok []byte, _, _ bool) {
		ring[n%3] = hashBytes(fnvOffset, tok)
		n++
		if n < 3 {
			return
		}
		// Order-sensitive combination of the last three words.
		a, b, c := ring[(n-3)%3], ring[(n-2)%3], ring[(n-1)%3]
		h := mix64(mix64(a)*31 + mix64(b)*17 + c)
		for i := range 64 {
			if h&(1<<i) != 0 {
				votes[i]++
			} else {
				votes[i]--
			}
		}
	})
	if n > 0 && n < 3 {
		for i := range n {
			h := mix64(ring[i])
			for j := range 64 {
				if h&(1<<j) != 0 {
					votes[j]++
				} else {
					votes[j]--
				}
			}
		}
	}
	var out uint64
	for i, v := range votes {
		if v > 0 {
			out |= 1 << i
		}
	}
	s := strconv.FormatUint(out, 16)
	for len(s) < 16 {
		s = "0" + s
	}
	return s
}
