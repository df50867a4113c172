package classify

import (
	"strconv"
)

// maxShingles bounds the words hashed: the opening of a message identifies
// its campaign, and a long body should not cost more.
const maxShingles = 400

// simhasher computes a 64-bit simhash (Charikar) of a body's word
// 3-shingles: each shingle's hash votes on every bit, and the sign of the sum
// is the bit. Near-identical bodies (one campaign with per-recipient names or
// tracking codes) differ in few bits, so analytics can group them by Hamming
// distance. Words are the lowercased letter and digit runs of the tokenizer,
// so markup, case and spacing do not matter. Only the first maxShingles
// words count.
type simhasher struct {
	ring [3]uint64
	n    int // words seen
	// Bit counts: acc holds 8-bit counters in SWAR lanes (lane b of acc[i]
	// counts bit 8b+i), flushed into ones before they can overflow.
	acc     [8]uint64
	pending int
	ones    [64]int32
	total   int32
}

func (s *simhasher) word(tok []byte) {
	if s.n >= maxShingles {
		return
	}
	s.ring[s.n%3] = hashBytes(fnvOffset, tok)
	s.n++
	if s.n < 3 {
		return
	}
	// Order-sensitive combination of the last three words.
	a, b, c := s.ring[(s.n-3)%3], s.ring[(s.n-2)%3], s.ring[(s.n-1)%3]
	s.vote(mix64(mix64(a)*31 + mix64(b)*17 + c))
}

// vote counts the set bits of h.
func (s *simhasher) vote(h uint64) {
	for i := range s.acc {
		s.acc[i] += h >> i & 0x0101010101010101
	}
	s.total++
	if s.pending++; s.pending == 255 {
		s.flush()
	}
}

func (s *simhasher) flush() {
	for i, a := range s.acc {
		for b := range 8 {
			s.ones[8*b+i] += int32(a >> (8 * b) & 0xff)
		}
		s.acc[i] = 0
	}
	s.pending = 0
}

// sum returns the fingerprint as 16 hex digits.
func (s *simhasher) sum() string {
	if s.n > 0 && s.n < 3 {
		// Too short for shingles: the words themselves vote.
		for i := range s.n {
			s.vote(mix64(s.ring[i]))
		}
	}
	s.flush()
	// A bit is set when more shingles had it set than not.
	var out uint64
	for i, v := range s.ones {
		if 2*v > s.total {
			out |= 1 << i
		}
	}
	h := strconv.FormatUint(out, 16)
	for len(h) < 16 {
		h = "0" + h
	}
	return h
}
