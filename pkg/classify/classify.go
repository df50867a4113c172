// Package classify is the outbound spam classifier engine: it scores every
// message a tenant submits, before it leaves, and says why. The classifier
// role of the pipeline runs one Engine and calls Classify for each message.
//
// # How a message is scored
//
// The message is parsed by pkg/mailparse (bounded, lenient). Two kinds of
// evidence are extracted:
//
//   - hashed tokens: words and word pairs of the subject and body, header
//     facts (which fields exist, the From domain, the mailer, the shapes of
//     Message-ID and Date), link hosts and domains, MIME structure and
//     attachment types, each hashed (FNV-1a, 2^20 buckets) into a feature;
//   - rules: named tests beyond words (From display name naming another
//     domain, Reply-To elsewhere, missing Message-ID, shouting subject,
//     HTML-only mail with little text, invisible text, links to bare IPs,
//     shorteners, link text that shows another domain than its target,
//     image-only mail, executable attachments, credential phishing...).
//
// Both feed one logistic regression: score = 100 * sigmoid(bias + sum of
// weights of the features present). The verdict's symbols are the rules that
// fired and the summed contribution of each token family, with their weights
// in logit units, so the symbols add up to the logit behind the score.
//
// # Why logistic regression on hashed features
//
// Naive Bayes treats tokens as independent, so a message with many correlated
// spammy words (a newsletter with prices and "unsubscribe") piles up
// evidence and gets extreme, badly calibrated scores; that is exactly the
// hard_ham false positive an outbound platform must avoid. Logistic
// regression learns weights jointly, so correlated tokens share the credit,
// rules and tokens get weights on one scale, learned from the same data,
// and the output is a calibrated probability whose thresholds mean the same
// from one retraining to the next. Feature hashing keeps the model a fixed
// size without a vocabulary, and unseen words simply weigh nothing. Training
// is deterministic (fixed example order, seeded shuffle, no concurrency), so
// `make model` rebuilds the embedded model byte for byte.
//
// The malicious rules (executables, macro documents, archives holding
// executables, credential phishing) are too rare in the training corpus to
// learn; they carry Config.MaliciousWeight and make the label malicious.
package classify

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/outflowmail/outflow/pkg/mailparse"
)

// Label is the verdict's class.
type Label string

// Labels, in increasing order of risk.
const (
	LabelClean     Label = "clean"
	LabelSuspect   Label = "suspect"
	LabelSpam      Label = "spam"
	LabelMalicious Label = "malicious"
)

// Symbol is one piece of evidence behind a score: a rule that fired or a
// token family, with its contribution in logit units (positive: spammy).
type Symbol struct {
	Name   string  `json:"name"`
	Weight float64 `json:"weight"`
}

// Verdict is the classifier's answer for one message.
type Verdict struct {
	// Score is the spam probability in percent, 0 to 100.
	Score float64 `json:"score"`
	Label Label   `json:"label"`
	// Symbols are sorted by decreasing absolute weight.
	Symbols []Symbol `json:"symbols"`
	// Fingerprint is a 64-bit simhash of the normalised body text, in hex:
	// messages of one campaign differ in few bits, whatever tenant sends
	// them.
	Fingerprint string `json:"fingerprint"`
	// Model is the version of the model that scored the message.
	Model string `json:"model"`
}

// Config holds the classifier's settings.
type Config struct {
	// SuspectThreshold is the score (0-100) from which a message is labelled
	// suspect. Default 50.
	SuspectThreshold float64 `yaml:"suspect_threshold"`
	// SpamThreshold is the score (0-100) from which a message is labelled
	// spam; it must not be below suspect_threshold. Default 95: in 5-fold
	// cross-validation on the training corpus no ham (and no hard_ham
	// newsletter) reached it, while at 90 one newsletter did. A false
	// positive sends a good tenant's mail through the high-risk pool, so this
	// errs towards missing spam.
	SpamThreshold float64 `yaml:"spam_threshold"`
	// MaliciousWeight is the logit weight of each malicious rule
	// (executable, macro document, archive with an executable, credential
	// phishing). Default 6. Any malicious rule makes the label malicious.
	MaliciousWeight float64 `yaml:"malicious_weight"`
	// MaxSymbols caps the symbols listed in a verdict. Default 16.
	MaxSymbols int `yaml:"max_symbols"`
	// MaxTextBytes caps the decoded text read from one message; the rest is
	// not scored. Default 262144 (256 KiB).
	MaxTextBytes int `yaml:"max_text_bytes"`
}

// DefaultConfig returns the default settings.
func DefaultConfig() Config {
	return Config{
		SuspectThreshold: 50,
		SpamThreshold:    95,
		MaliciousWeight:  6,
		MaxSymbols:       16,
		MaxTextBytes:     256 << 10,
	}
}

// Validate reports the first setting that is out of range, by its key.
func (c Config) Validate() error {
	switch {
	case math.IsNaN(c.SuspectThreshold) || c.SuspectThreshold < 0 || c.SuspectThreshold > 100:
		return fmt.Errorf("classifier config: suspect_threshold %v: must be between 0 and 100", c.SuspectThreshold)
	case math.IsNaN(c.SpamThreshold) || c.SpamThreshold < c.SuspectThreshold || c.SpamThreshold > 100:
		return fmt.Errorf("classifier config: spam_threshold %v: must be between suspect_threshold (%v) and 100",
			c.SpamThreshold, c.SuspectThreshold)
	case math.IsNaN(c.MaliciousWeight) || c.MaliciousWeight < 0 || c.MaliciousWeight > 50:
		return fmt.Errorf("classifier config: malicious_weight %v: must be between 0 and 50", c.MaliciousWeight)
	case c.MaxSymbols < 1 || c.MaxSymbols > 1000:
		return fmt.Errorf("classifier config: max_symbols %d: must be between 1 and 1000", c.MaxSymbols)
	case c.MaxTextBytes < 1024 || c.MaxTextBytes > 64<<20:
		return fmt.Errorf("classifier config: max_text_bytes %d: must be between 1024 and 67108864", c.MaxTextBytes)
	}
	return nil
}

// Engine scores messages. It is immutable after New and safe for concurrent
// use.
type Engine struct {
	cfg   Config
	model *Model
	lim   mailparse.Limits
	// extractors holds *extractor: their hash-bucket bitset (128 KiB for
	// the default model) and buffers are reused, not reallocated per call.
	extractors sync.Pool
}

// New returns an engine using the embedded model.
func New(cfg Config) (*Engine, error) {
	m, err := LoadModel(embeddedModel)
	if err != nil {
		return nil, fmt.Errorf("load embedded model: %w", err)
	}
	return NewWithModel(cfg, m)
}

// NewWithModel returns an engine using m, for evaluation and retraining.
func NewWithModel(cfg Config, m *Model) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lim := mailparse.DefaultLimits()
	lim.MaxTextBytes = cfg.MaxTextBytes
	e := &Engine{cfg: cfg, model: m, lim: lim}
	e.extractors.New = func() any { return newExtractor(m.mask()) }
	return e, nil
}

// Model returns the engine's model.
func (e *Engine) Model() *Model { return e.model }

// Classify scores one raw RFC 5322 message. It fails only when ctx is done;
// malformed messages are scored as they can be read.
func (e *Engine) Classify(ctx context.Context, msg []byte) (Verdict, error) {
	if err := ctx.Err(); err != nil {
		return Verdict{}, err
	}
	x := e.extractors.Get().(*extractor)
	pm := x.parser.Parse(msg, e.lim)
	f := x.extract(pm)
	logit, symbols := e.score(&f, x)
	// pm and f.ids live in x's buffers: x goes back once the verdict no
	// longer needs them (it keeps none of their memory).
	e.extractors.Put(x)
	v := Verdict{
		Score:       math.Round(10000*sigmoid(logit)) / 100,
		Fingerprint: f.fingerprint,
		Model:       e.model.version,
	}
	v.Label = e.cfg.label(v.Score, f.malicious())
	if len(symbols) > e.cfg.MaxSymbols {
		symbols = symbols[:e.cfg.MaxSymbols]
	}
	v.Symbols = symbols
	return v, nil
}

// label maps a score to a label; malicious evidence wins over any score.
func (c Config) label(score float64, malicious bool) Label {
	switch {
	case malicious:
		return LabelMalicious
	case score >= c.SpamThreshold:
		return LabelSpam
	case score >= c.SuspectThreshold:
		return LabelSuspect
	}
	return LabelClean
}

func (m *Model) mask() uint64 { return uint64(len(m.tokens) - 1) }

func (f *features) malicious() bool {
	for r := firstMalicious; r < numRules; r++ {
		if f.rules[r] {
			return true
		}
	}
	return false
}

// score returns the logit and the symbols behind it.
func (e *Engine) score(f *features, x *extractor) (float64, []Symbol) {
	m := e.model
	var fam [numFamilies]float64
	scale := tokenScale(len(f.ids), float64(m.norm))
	for _, id := range f.ids {
		fam[id>>famShift] += float64(m.tokens[id&(1<<famShift-1)]) * scale
	}
	logit := float64(m.bias)
	symbols := make([]Symbol, 0, 16)
	symbols = append(symbols, Symbol{Name: "BIAS", Weight: round3(float64(m.bias))})
	for i, w := range fam {
		logit += w
		if w != 0 {
			symbols = append(symbols, Symbol{Name: familySymbol[i], Weight: round3(w)})
		}
	}
	var p float64
	var ok bool
	if p, x.probs, ok = m.bayesScore(f.ids, x.probs[:0]); ok && m.nbWeight != 0 {
		p = min(max(p, 0.001), 0.999)
		w := float64(m.nbWeight) * math.Log(p/(1-p))
		logit += w
		symbols = append(symbols, Symbol{Name: "BAYES", Weight: round3(w)})
	}
	for r := range numRules {
		if !f.rules[r] {
			continue
		}
		w := float64(m.rules[r])
		if r >= firstMalicious {
			w += e.cfg.MaliciousWeight
		}
		logit += w
		symbols = append(symbols, Symbol{Name: ruleInfo[r].name, Weight: round3(w)})
	}
	slices.SortStableFunc(symbols, func(a, b Symbol) int {
		switch x, y := math.Abs(a.Weight), math.Abs(b.Weight); {
		case x > y:
			return -1
		case x < y:
			return 1
		}
		return 0
	})
	return logit, symbols
}

// tokenScale is the value of each present token feature: norm/sqrt(n) for n
// distinct features, so a long message does not pile up evidence just by
// being long (the token vector has length norm whatever the message size,
// while rule features are 0 or 1).
func tokenScale(n int, norm float64) float64 {
	if n == 0 {
		return 0
	}
	return norm / math.Sqrt(float64(n))
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
