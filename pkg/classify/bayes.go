package classify

import (
	"cmp"
	"math"
	"slices"
)

// Robinson-Fisher naive Bayes over the same hashed token features as the
// logistic regression. The two are combined because they fail differently:
// the regression weighs every token jointly, the Bayes classifier looks only
// at the most telling tokens and combines them with Fisher's method, which
// resists a long, bland body diluting a few strong spam tokens.
const (
	// bayesS and bayesX are Robinson's strength and prior of the smoothed
	// token probability f(w) = (s*x + n*p(w)) / (s + n).
	bayesS = 0.45
	bayesX = 0.5
	// bayesMinDev: tokens with |f(w) - 0.5| below this are ignored.
	bayesMinDev = 0.1
	// bayesMaxTokens: at most this many most extreme tokens are combined.
	bayesMaxTokens = 150
)

// bayesProb returns Robinson's smoothed spam probability of a token seen in
// spam of nSpam spam messages and ham of nHam ham messages.
func bayesProb(spam, ham, nSpam, nHam int) float64 {
	sr := float64(spam) / float64(nSpam)
	hr := float64(ham) / float64(nHam)
	p := sr / (sr + hr)
	n := float64(spam + ham)
	return (bayesS*bayesX + n*p) / (bayesS + n)
}

// quantBayes maps f in [0,1] to 1..65535; 0 means no data.
func quantBayes(f float64) uint16 { return uint16(1 + math.Round(f*65534)) }

func unquantBayes(q uint16) float64 { return float64(q-1) / 65534 }

// bayesScore combines the token probabilities of a message with Fisher's
// method (chi-square) as SpamBayes does and returns the spam indicator in
// [0,1], and whether any token had evidence. fs is scratch space, returned
// for reuse.
func (m *Model) bayesScore(ids []uint32, fs []float64) (float64, []float64, bool) {
	if len(m.nb) == 0 {
		return 0.5, fs, false
	}
	prev := uint32(math.MaxUint32)
	for _, id := range ids {
		i := id & (1<<famShift - 1)
		if i == prev {
			continue
		}
		prev = i
		q := m.nb[i]
		if q == 0 {
			continue
		}
		f := unquantBayes(q)
		if math.Abs(f-0.5) >= bayesMinDev {
			fs = append(fs, f)
		}
	}
	if len(fs) == 0 {
		return 0.5, fs, false
	}
	if len(fs) > bayesMaxTokens {
		slices.SortFunc(fs, func(a, b float64) int {
			return cmp.Compare(math.Abs(b-0.5), math.Abs(a-0.5))
		})
		fs = fs[:bayesMaxTokens]
	}
	var lnS, lnH float64
	for _, f := range fs {
		f = min(max(f, 1e-6), 1-1e-6)
		lnS += math.Log(f)
		lnH += math.Log(1 - f)
	}
	n := len(fs)
	a := chi2Q(-2*lnS, 2*n) // near 1 when tokens are spammy
	b := chi2Q(-2*lnH, 2*n) // near 0 when tokens are spammy
	return (1 + a - b) / 2, fs, true
}

// chi2Q is the survival function of the chi-square distribution with v
// (even) degrees of freedom at x2.
func chi2Q(x2 float64, v int) float64 {
	m := x2 / 2
	sum := math.Exp(-m)
	term := sum
	for i := 1; i < v/2; i++ {
		term *= m / float64(i)
		sum += term
	}
	return min(sum, 1)
}
