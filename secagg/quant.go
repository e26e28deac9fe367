package secagg

import (
	"fmt"
	"io"
	"math"
)

// quantScale returns the factor mapping [-ClipRange, ClipRange] onto [0, 2^Bits - 1].
func (c *Config) quantLevels() float64 { return float64(uint64(1)<<c.Bits - 1) }

// encodeInput clips update to [-ClipRange, ClipRange] and weight to [0, MaxWeight], rounds each
// stochastically to Bits bits (unbiased: E[q] equals the scaled value, up to 2^-32 from the
// 32-bit uniform draws) and writes Dim+1 ring elements to dst, the weight last.
func (c *Config) encodeInput(update []float32, weight float64, rs *byteStream, dst []uint32) error {
	if len(update) != c.Dim {
		return fmt.Errorf("secagg input: update has %d entries, config says %d", len(update), c.Dim)
	}
	if len(dst) != c.Dim+1 {
		return fmt.Errorf("secagg input: destination has %d entries, need %d", len(dst), c.Dim+1)
	}
	if math.IsNaN(weight) || math.IsInf(weight, 0) || weight < 0 {
		return fmt.Errorf("secagg input: weight %v must be finite and ≥ 0", weight)
	}
	levels := c.quantLevels()
	clip := c.ClipRange
	// y = (x + clip)·scale ∈ [0, levels]; q = floor(y + u) with u = r/2^32, computed in fixed
	// point as (y·2^32 + r) >> 32: exact, since y·2^32 < 2^63 is a float64 with an exact
	// integer part, and it needs no floating-point floor.
	scale := levels / (2 * clip) * (1 << 32)
	top := uint64(levels) << 32
	// Reject NaN and ±Inf first (exponent all ones), so the rounding loop has no branches.
	for i, x := range update {
		if math.Float32bits(x)&0x7f800000 == 0x7f800000 {
			return fmt.Errorf("secagg input: entry %d is %v", i, x)
		}
	}
	var noise [1024]uint32
	for off := 0; off < len(update); off += len(noise) {
		n := min(len(noise), len(update)-off)
		rs.fillUint32(noise[:n])
		src := update[off : off+n]
		out := dst[off : off+n]
		noise := noise[:len(src)]
		for i, x := range src {
			v := min(max(float64(x), -clip), clip)
			yfix := uint64(int64((v + clip) * scale)) // < 2^48: the signed conversion is one instruction
			out[i] = uint32(min(yfix+uint64(noise[i]), top) >> 32)
		}
	}
	w := min(weight, c.MaxWeight) * (levels / c.MaxWeight)
	var r [1]uint32
	rs.fillUint32(r[:])
	dst[c.Dim] = uint32(min(math.Floor(w+float64(r[0])*(1.0/(1<<32))), levels))
	return nil
}

// EncodeInput quantises one client's update and weight exactly as a Client does, drawing the
// rounding randomness from rng (crypto/rand in real runs; a seeded reader in tests). It returns
// Dim+1 ring elements; the engine passes them to Client.SetEncodedInput when it needs the
// encoded values itself (for example to check a round's result).
func EncodeInput(cfg *Config, update []float32, weight float64, rng io.Reader) ([]uint32, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rs, err := newByteStream(rng)
	if err != nil {
		return nil, err
	}
	out := make([]uint32, cfg.Dim+1)
	if err := cfg.encodeInput(update, weight, rs, out); err != nil {
		return nil, err
	}
	return out, nil
}

// DecodeSum turns a ring sum of `survivors` encoded inputs (Dim+1 entries, weight last) into the
// float64 sum of their quantised updates and their total weight.
func DecodeSum(cfg *Config, ring []uint32, survivors int) (sum []float64, weight float64, err error) {
	if len(ring) != cfg.Dim+1 {
		return nil, 0, fmt.Errorf("decode sum: %d entries, need %d", len(ring), cfg.Dim+1)
	}
	levels := cfg.quantLevels()
	step := 2 * cfg.ClipRange / levels
	offset := float64(survivors) * cfg.ClipRange
	sum = make([]float64, cfg.Dim)
	for i := range sum {
		sum[i] = float64(ring[i])*step - offset
	}
	weight = float64(ring[cfg.Dim]) * (cfg.MaxWeight / levels)
	return sum, weight, nil
}
