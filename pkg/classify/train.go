package classify

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/outflowmail/outflow/pkg/mailparse"
)

// Example is one labelled training message.
type Example struct {
	Msg  []byte
	Spam bool
}

// TrainOptions tune training. The zero value of a field means its default.
type TrainOptions struct {
	// Bits is the number of hash bits (2^Bits token buckets). Default 20.
	Bits int
	// Epochs over the training set. Default 12.
	Epochs int
	// Rate is the AdaGrad base learning rate. Default 0.2.
	Rate float64
	// L2 is the L2 regularisation strength per update. Default 5e-5.
	L2 float64
	// HamWeight weighs the loss of ham examples relative to spam, so the
	// model leans away from false positives. Default 1.75.
	HamWeight float64
	// TokenNorm is the length of a message's token feature vector (see
	// tokenScale). Default 8.
	TokenNorm float64
	// BayesWeight is the weight of the naive Bayes logit added to the
	// score; 0 (the default) leaves the Bayes part out, which
	// cross-validation preferred (see docs/classifier.md).
	BayesWeight float64
	// Seed seeds the per-epoch shuffle. Default 1.
	Seed uint64
}

func (o TrainOptions) withDefaults() TrainOptions {
	if o.Bits == 0 {
		o.Bits = defaultBits
	}
	if o.Epochs == 0 {
		o.Epochs = 12
	}
	if o.Rate == 0 {
		o.Rate = 0.2
	}
	if o.L2 == 0 {
		o.L2 = 5e-5
	}
	if o.HamWeight == 0 {
		o.HamWeight = 1.75
	}
	if o.TokenNorm == 0 {
		o.TokenNorm = 8
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	return o
}

// ErrNoExamples: training needs both ham and spam.
var ErrNoExamples = errors.New("classify: training needs ham and spam examples")

// Vector is the extracted features of one message, ready for training;
// extracting once lets cross-validation train many models cheaply.
type Vector struct {
	f    features
	spam bool
}

// Vectorize extracts the features of examples for a model of bits hash bits
// (0 means the default).
func Vectorize(ctx context.Context, exs []Example, bits int) ([]Vector, error) {
	if bits == 0 {
		bits = defaultBits
	}
	lim := mailparse.DefaultLimits()
	lim.MaxTextBytes = DefaultConfig().MaxTextBytes
	out := make([]Vector, len(exs))
	mask := uint64(1)<<bits - 1
	for i, ex := range exs {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		out[i] = Vector{f: extract(mailparse.Parse(ex.Msg, lim), mask), spam: ex.Spam}
	}
	return out, nil
}

// Train fits a model to examples.
func Train(ctx context.Context, exs []Example, opt TrainOptions) (*Model, error) {
	opt = opt.withDefaults()
	vs, err := Vectorize(ctx, exs, opt.Bits)
	if err != nil {
		return nil, err
	}
	return TrainVectors(ctx, vs, opt)
}

// TrainVectors fits a model to vectors made by Vectorize with the same Bits.
// It minimises weighted logistic loss with AdaGrad and L2 regularisation,
// visiting the vectors in an order shuffled by opt.Seed. It is
// deterministic: the same vectors and options give the same model.
func TrainVectors(ctx context.Context, vs []Vector, opt TrainOptions) (*Model, error) {
	opt = opt.withDefaults()
	var nSpam int
	for _, v := range vs {
		if v.spam {
			nSpam++
		}
	}
	if nSpam == 0 || nSpam == len(vs) {
		return nil, ErrNoExamples
	}
	if opt.Bits < 10 || opt.Bits > 26 {
		return nil, fmt.Errorf("train: bits %d: must be between 10 and 26", opt.Bits)
	}
	size := 1 << opt.Bits
	w := make([]float64, size)
	g2 := make([]float64, size)
	var rw, rg2 [numRules]float64
	var bias, bg2 float64
	const eps = 1e-8

	order := make([]int, len(vs))
	for i := range order {
		order[i] = i
	}
	rng := rand.New(rand.NewPCG(opt.Seed, 0x6f75_7466_6c6f_77))
	mask := uint32(size - 1)
	for range opt.Epochs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, k := range order {
			v := &vs[k]
			scale := tokenScale(len(v.f.ids), float64(float32(opt.TokenNorm)))
			z := bias
			for _, id := range v.f.ids {
				z += w[id&mask] * scale
			}
			for r := range numRules {
				if v.f.rules[r] && r < firstMalicious {
					z += rw[r]
				}
			}
			p := sigmoid(z)
			y, cw := 0.0, opt.HamWeight
			if v.spam {
				y, cw = 1, 1
			}
			g := (p - y) * cw
			for _, id := range v.f.ids {
				i := id & mask
				gi := g*scale + opt.L2*w[i]
				g2[i] += gi * gi
				w[i] -= opt.Rate * gi / (math.Sqrt(g2[i]) + eps)
			}
			for r := range numRules {
				if v.f.rules[r] && r < firstMalicious {
					gi := g + opt.L2*rw[r]
					rg2[r] += gi * gi
					rw[r] -= opt.Rate * gi / (math.Sqrt(rg2[r]) + eps)
				}
			}
			bg2 += g * g
			bias -= opt.Rate * g / (math.Sqrt(bg2) + eps)
		}
	}
	m := &Model{bits: uint8(opt.Bits), bias: float32(bias), norm: float32(opt.TokenNorm), tokens: make([]float32, size)}
	for i, x := range w {
		m.tokens[i] = float32(x)
	}
	for r := range numRules {
		m.rules[r] = float32(rw[r])
	}
	if opt.BayesWeight > 0 {
		m.nbWeight = float32(opt.BayesWeight)
		m.nb = trainBayes(vs, size, mask)
	}
	return reload(m)
}

// trainBayes counts, per token bucket, the ham and spam messages that have
// it and stores Robinson's smoothed probability for buckets whose evidence
// is strong enough to be used (the others are never looked at).
func trainBayes(vs []Vector, size int, mask uint32) []uint16 {
	spam := make([]int32, size)
	ham := make([]int32, size)
	var nSpam, nHam int
	for i := range vs {
		v := &vs[i]
		cnt := ham
		if v.spam {
			cnt = spam
			nSpam++
		} else {
			nHam++
		}
		prev := uint32(math.MaxUint32)
		for _, id := range v.f.ids {
			j := id & mask
			if j != prev { // ids are sorted by family first; a bucket may repeat across families
				cnt[j]++
			}
			prev = j
		}
	}
	nb := make([]uint16, size)
	for j := range nb {
		if spam[j] == 0 && ham[j] == 0 {
			continue
		}
		f := bayesProb(int(spam[j]), int(ham[j]), nSpam, nHam)
		if math.Abs(f-0.5) >= bayesMinDev {
			nb[j] = quantBayes(f)
		}
	}
	return nb
}
