package classify

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
)

// embeddedModel is the model trained by `make model` from the SpamAssassin
// public corpus (see docs/classifier.md).
//
//go:embed model.bin
var embeddedModel []byte

// Model errors.
var (
	// ErrModelFormat: the model file is not one this package writes.
	ErrModelFormat = errors.New("classify: bad model file")
)

const (
	modelMagic   = "OFLR"
	modelVersion = 1
	defaultBits  = 20
)

// Model holds the weights of the logistic regression: one per hashed token
// bucket, one per rule, and the bias. It is immutable once built, so one
// Model serves any number of concurrent Classify calls.
type Model struct {
	bits   uint8
	bias   float32
	norm   float32   // token vector length, see tokenScale
	tokens []float32 // len 1<<bits
	// nb holds the quantised Bayes token probability per bucket (0: none),
	// and nbWeight the weight of the Bayes logit in the score.
	nb       []uint16
	nbWeight float32
	rules    [numRules]float32
	version  string
}

// Version names the model: "lr-" and the start of the SHA-256 of its file.
func (m *Model) Version() string { return m.version }

// MarshalBinary encodes the model. Weights are quantised to 16 bits and
// zero weights are left out, which keeps the embedded file small; the
// encoding is deterministic, so the same training yields the same bytes.
func (m *Model) MarshalBinary() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(modelMagic)
	b.WriteByte(modelVersion)
	b.WriteByte(m.bits)
	writeF32(&b, m.bias)
	writeF32(&b, m.norm)
	binary.Write(&b, binary.LittleEndian, uint16(numRules))
	for i := range numRules {
		name := ruleInfo[i].name
		b.WriteByte(byte(len(name)))
		b.WriteString(name)
		writeF32(&b, m.rules[i])
	}
	var maxAbs float32
	for _, w := range m.tokens {
		maxAbs = max(maxAbs, float32(math.Abs(float64(w))))
	}
	scale := maxAbs / 32767
	if scale == 0 {
		scale = 1
	}
	writeF32(&b, scale)
	type entry struct {
		idx uint32
		q   int16
	}
	var entries []entry
	for i, w := range m.tokens {
		q := int16(math.Round(float64(w / scale)))
		if q != 0 {
			entries = append(entries, entry{uint32(i), q})
		}
	}
	var tmp [binary.MaxVarintLen64]byte
	b.Write(tmp[:binary.PutUvarint(tmp[:], uint64(len(entries)))])
	prev := uint32(0)
	for _, e := range entries {
		b.Write(tmp[:binary.PutUvarint(tmp[:], uint64(e.idx-prev))])
		b.Write(tmp[:binary.PutVarint(tmp[:], int64(e.q))])
		prev = e.idx
	}
	writeF32(&b, m.nbWeight)
	nnb := 0
	for _, q := range m.nb {
		if q != 0 {
			nnb++
		}
	}
	b.Write(tmp[:binary.PutUvarint(tmp[:], uint64(nnb))])
	prev = 0
	for i, q := range m.nb {
		if q == 0 {
			continue
		}
		b.Write(tmp[:binary.PutUvarint(tmp[:], uint64(uint32(i)-prev))])
		b.Write(tmp[:binary.PutUvarint(tmp[:], uint64(q))])
		prev = uint32(i)
	}
	return b.Bytes(), nil
}

func writeF32(b *bytes.Buffer, f float32) {
	var t [4]byte
	binary.LittleEndian.PutUint32(t[:], math.Float32bits(f))
	b.Write(t[:])
}

// LoadModel decodes a model written by MarshalBinary. Rules the file does
// not name get weight zero; rules it names that this build does not know
// are ignored.
func LoadModel(data []byte) (*Model, error) {
	r := bytes.NewReader(data)
	head := make([]byte, len(modelMagic)+2)
	if _, err := io.ReadFull(r, head); err != nil || string(head[:4]) != modelMagic || head[4] != modelVersion {
		return nil, ErrModelFormat
	}
	m := &Model{bits: head[5]}
	if m.bits < 10 || m.bits > 26 {
		return nil, fmt.Errorf("%w: %d hash bits", ErrModelFormat, m.bits)
	}
	var err error
	if m.bias, err = readF32(r); err != nil {
		return nil, err
	}
	if m.norm, err = readF32(r); err != nil {
		return nil, err
	}
	var n uint16
	if err := binary.Read(r, binary.LittleEndian, &n); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModelFormat, err)
	}
	for range n {
		l, err := r.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrModelFormat, err)
		}
		name := make([]byte, l)
		if _, err := io.ReadFull(r, name); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrModelFormat, err)
		}
		w, err := readF32(r)
		if err != nil {
			return nil, err
		}
		for i := range numRules {
			if ruleInfo[i].name == string(name) {
				m.rules[i] = w
			}
		}
	}
	scale, err := readF32(r)
	if err != nil {
		return nil, err
	}
	count, err := binary.ReadUvarint(r)
	if err != nil || count > 1<<m.bits {
		return nil, fmt.Errorf("%w: entry count", ErrModelFormat)
	}
	m.tokens = make([]float32, 1<<m.bits)
	idx := uint64(0)
	for range count {
		d, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrModelFormat, err)
		}
		q, err := binary.ReadVarint(r)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrModelFormat, err)
		}
		idx += d
		if idx >= uint64(len(m.tokens)) {
			return nil, fmt.Errorf("%w: index out of range", ErrModelFormat)
		}
		m.tokens[idx] = float32(q) * scale
	}
	if m.nbWeight, err = readF32(r); err != nil {
		return nil, err
	}
	nnb, err := binary.ReadUvarint(r)
	if err != nil || nnb > 1<<m.bits {
		return nil, fmt.Errorf("%w: bayes entry count", ErrModelFormat)
	}
	if nnb > 0 {
		m.nb = make([]uint16, 1<<m.bits)
	}
	idx = 0
	for range nnb {
		d, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrModelFormat, err)
		}
		q, err := binary.ReadUvarint(r)
		if err != nil || q == 0 || q > math.MaxUint16 {
			return nil, fmt.Errorf("%w: bayes entry", ErrModelFormat)
		}
		idx += d
		if idx >= uint64(len(m.nb)) {
			return nil, fmt.Errorf("%w: index out of range", ErrModelFormat)
		}
		m.nb[idx] = uint16(q)
	}
	sum := sha256.Sum256(data)
	m.version = "lr-" + hex.EncodeToString(sum[:6])
	return m, nil
}

func readF32(r io.Reader) (float32, error) {
	var t [4]byte
	if _, err := io.ReadFull(r, t[:]); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrModelFormat, err)
	}
	f := math.Float32frombits(binary.LittleEndian.Uint32(t[:]))
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return 0, fmt.Errorf("%w: non-finite weight", ErrModelFormat)
	}
	return f, nil
}

// reload round-trips a freshly trained model through its encoding, so that
// cross-validation scores exactly what would be shipped (quantised weights).
func reload(m *Model) (*Model, error) {
	b, err := m.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return LoadModel(b)
}
