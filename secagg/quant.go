package secagg

import (
	"fmt"
	"io"
	"math"
	"math/bits"
)

// Conditional randomized rounding (Kairouz, Liu and Steinke, "The Distributed Discrete Gaussian
// Mechanism for Federated Learning with Secure Aggregation", ICML 2021, Algorithm 1): unbiased
// stochastic rounding alone can leave the quantised update much longer than the clipped one
// (each entry moves by up to one step γ, so by up to γ·√d in norm), and a DP mechanism that
// assumes the clip norm S as its sensitivity would then under-noise. The client therefore
// redraws the rounding of its whole update until the dequantised vector x̂ satisfies
//
//	‖x̂‖² ≤ B(‖x‖)² = min{ (‖x‖ + γ√m)², ‖x‖² + γ²m/4 + √(2 ln(1/β))·γ·(‖x‖ + γ√m/2) }
//
// where x is the update after clipping to ±ClipRange, m = NormDim and γ = 2·ClipRange/(2^Bits−1).
// The first term always holds (no entry moves by more than γ). For the second, write each
// rounded entry as x̂_i = x_i + e_i with E[e_i] = 0 and E[e_i²] ≤ γ²/4: ‖x̂‖² − ‖x‖² − Σ E[e_i²] is
// a sum of independent terms 2x_i·e_i + e_i² − E[e_i²], each confined to an interval of width at
// most 2|x_i|γ + γ², so by Hoeffding's inequality it exceeds √(2 ln(1/β))·γ·(‖x‖ + γ√m/2) with
// probability at most β. A draw therefore succeeds with probability at least 1 − β = 1 − 2^-30,
// and the expected number of draws is at most 1/(1 − β). B is increasing in ‖x‖, so a client
// whose update has norm at most S contributes a vector of norm at most B(S) = NormBound(cfg, S):
// that, not S, is the sensitivity of the sum (the adapter's Sensitivity). The check is made in
// exact integer arithmetic on the quantised values, so it holds for every contribution, not
// only with high probability; conditioning biases the rounding by at most β in total
// variation.
const (
	roundingBeta     = 0x1p-30 // β: the probability that one draw exceeds the bound
	maxRoundingDraws = 32      // a client gives up after this many draws (probability ≤ β^32)
)

// roundingSlack is √(2 ln(1/β)).
var roundingSlack = math.Sqrt(2 * math.Log(1/roundingBeta))

// quantLevels returns L = 2^Bits − 1: [-ClipRange, ClipRange] maps onto [0, L].
func (c *Config) quantLevels() float64 { return float64(uint64(1)<<c.Bits - 1) }

// quantStep returns γ = 2·ClipRange/L, the distance between adjacent quantised values.
func (c *Config) quantStep() float64 { return 2 * c.ClipRange / c.quantLevels() }

// normDim returns m, the number of leading entries whose norm conditional rounding bounds.
func (c *Config) normDim() int {
	if c.NormDim == 0 {
		return c.Dim
	}
	return c.NormDim
}

// NormBound returns B(norm): the largest L2 norm the dequantised first NormDim entries of an
// input can have when those entries, clipped to ±ClipRange, have L2 norm `norm` (see the
// comment on conditional rounding above). For a DP clip S, NormBound(cfg, S) is the sensitivity
// of the sum: B(S) = √(S² + O(γ²m + γS)), for example 0.500061 for S = 0.5, m = 199,210 and
// 16 bits over ±0.5.
func NormBound(cfg *Config, norm float64) float64 {
	return math.Sqrt(cfg.normBound2(norm, cfg.normDim()))
}

func (c *Config) normBound2(norm float64, m int) float64 {
	g := c.quantStep()
	rm := math.Sqrt(float64(m))
	det := norm + g*rm
	return min(det*det, norm*norm+g*g*float64(m)/4+roundingSlack*g*(norm+g*rm/2))
}

// encodeInput clips update to [-ClipRange, ClipRange] and weight to [0, MaxWeight], rounds each
// stochastically to Bits bits (unbiased: E[q] equals the scaled value, up to 2^-32 from the
// 32-bit uniform draws; the first NormDim entries conditionally on their norm, see above) and
// writes Dim+1 ring elements to dst, the weight last.
func (c *Config) encodeInput(update []float32, weight float64, rs *byteStream, dst []uint32) error {
	_, err := c.encodeInputDraws(update, weight, rs, dst)
	return err
}

// encodeInputDraws is encodeInput that also returns how many draws the bounded entries took.
func (c *Config) encodeInputDraws(update []float32, weight float64, rs *byteStream, dst []uint32) (int, error) {
	if len(update) != c.Dim {
		return 0, fmt.Errorf("secagg input: update has %d entries, config says %d", len(update), c.Dim)
	}
	if len(dst) != c.Dim+1 {
		return 0, fmt.Errorf("secagg input: destination has %d entries, need %d", len(dst), c.Dim+1)
	}
	if math.IsNaN(weight) || math.IsInf(weight, 0) || weight < 0 {
		return 0, fmt.Errorf("secagg input: weight %v must be finite and ≥ 0", weight)
	}
	// Reject NaN and ±Inf first (exponent all ones), so the rounding loop has no branches.
	for i, x := range update {
		if math.Float32bits(x)&0x7f800000 == 0x7f800000 {
			return 0, fmt.Errorf("secagg input: entry %d is %v", i, x)
		}
	}
	m := c.normDim()
	levels := c.quantLevels()
	draws := 1
	norm2, sqHi, sqLo := c.roundEntries(update[:m], rs, dst[:m])
	// ‖x̂‖² = (γ/2)²·Σ(2q−L)² with γ/2 = ClipRange/L: compare the exact integer sum with
	// B(‖x‖)²·(L/ClipRange)², lowered by 2^-30 to absorb the floating-point error of ‖x‖² and of
	// the bound itself, so that the guarantee holds for the exact values.
	limit := c.normBound2(math.Sqrt(norm2), m) * (levels / c.ClipRange) * (levels / c.ClipRange) * (1 - 0x1p-30)
	for float64(sqHi)*0x1p64+float64(sqLo) > limit {
		if draws == maxRoundingDraws {
			return draws, fmt.Errorf("secagg input: %d draws of the rounding all exceeded the norm bound", draws)
		}
		draws++
		_, sqHi, sqLo = c.roundEntries(update[:m], rs, dst[:m])
	}
	if m < c.Dim {
		c.roundEntries(update[m:], rs, dst[m:c.Dim])
	}
	w := min(weight, c.MaxWeight) * (levels / c.MaxWeight)
	var r [1]uint32
	rs.fillUint32(r[:])
	dst[c.Dim] = uint32(min(math.Floor(w+float64(r[0])*(1.0/(1<<32))), levels))
	return draws, nil
}

// roundEntries clips and stochastically rounds src into dst (same length) and returns ‖x‖² of
// the clipped entries (float64) and Σ(2q−L)² of the rounded ones (exact, as a 128-bit integer).
func (c *Config) roundEntries(src []float32, rs *byteStream, dst []uint32) (norm2 float64, sqHi, sqLo uint64) {
	levels := c.quantLevels()
	lv := int64(levels)
	clip := c.ClipRange
	// Clip in the bits of the float32 (no NaN or Inf reach here): |x| is clamped to the largest
	// float32 at most ClipRange with an integer min, which is cheaper than two float64 min/max.
	cf := float32(clip)
	if float64(cf) > clip {
		cf = math.Nextafter32(cf, 0)
	}
	cb := math.Float32bits(cf)
	// y = (x + clip)·scale ∈ [0, levels]; q = floor(y + u) with u = r/2^32, computed in fixed
	// point as (y·2^32 + r) >> 32: exact, since y·2^32 < 2^63 is a float64 with an exact
	// integer part, and it needs no floating-point floor.
	scale := levels / (2 * clip) * (1 << 32)
	top := uint64(levels) << 32
	var noise [1024]uint32
	for off := 0; off < len(src); off += len(noise) {
		n := min(len(noise), len(src)-off)
		rs.fillUint32(noise[:n])
		in := src[off : off+n]
		out := dst[off : off+n]
		noise := noise[:len(in)]
		var nx float64
		var sq uint64 // (2q−L)² < 2^48, so 1024 of them fit
		for i, x := range in {
			b := math.Float32bits(x)
			v := float64(math.Float32frombits(min(b&0x7fffffff, cb) | b&0x80000000))
			q := min(uint64(int64((v+clip)*scale))+uint64(noise[i]), top) >> 32 // < 2^48: the signed conversion is one instruction
			out[i] = uint32(q)
			d := 2*int64(q) - lv
			sq += uint64(d * d)
			nx += v * v
		}
		norm2 += nx
		var carry uint64
		sqLo, carry = bits.Add64(sqLo, sq, 0)
		sqHi += carry
	}
	return norm2, sqHi, sqLo
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

// Dequantise returns the update entries that ring elements encoded with EncodeInput stand for,
// in the units of the update: x̂_i = q_i·γ − ClipRange. (A sum of s inputs decodes with
// DecodeSum.)
func Dequantise(cfg *Config, encoded []uint32) []float64 {
	step := cfg.quantStep()
	out := make([]float64, min(len(encoded), cfg.Dim))
	for i := range out {
		out[i] = float64(encoded[i])*step - cfg.ClipRange
	}
	return out
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

// FeasibleSum checks a ring sum of `survivors` honest inputs (Dim+1 entries) against the range
// every such sum lies in: each entry, the weight included, is a sum of survivors values of Bits
// bits, so at most survivors·(2^Bits − 1). Masks cancel whatever a client sends, so a client
// that adds a constant to its masked input moves the unmasked sum by that constant and can
// wrap it around the ring (Z_{2^k} holds up to 2^k − 1 ≥ survivors·(2^Bits−1)); the result is
// then outside this range, and the server refuses to release it. Within the range a client
// still chooses its contribution freely (see the package documentation).
func FeasibleSum(cfg *Config, ring []uint32, survivors int) error {
	if len(ring) != cfg.Dim+1 {
		return fmt.Errorf("feasible sum: %d entries, need %d", len(ring), cfg.Dim+1)
	}
	limit := uint64(survivors) * uint64(cfg.quantLevels())
	for i, v := range ring {
		if uint64(v) > limit {
			what := fmt.Sprintf("entry %d", i)
			if i == cfg.Dim {
				what = "the weight"
			}
			return fmt.Errorf("%s of the unmasked sum is %d, beyond %d = %d survivors × %d, the largest sum of honest inputs",
				what, v, limit, survivors, uint64(cfg.quantLevels()))
		}
	}
	return nil
}
