package privacy

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"sync"
)

// Distributed DP (Kairouz, Liu, Steinke ICML 2021; Agarwal, Kairouz, Liu NeurIPS 2021): every
// client clips its update, rotates it with a randomized Hadamard transform, scales it by 1/γ,
// rounds it to integers conditionally on a norm bound, adds its share of integer noise, and
// wraps the result modulo 2^b; the secure sum adds the clients' vectors in Z_{2^b}, so the only
// sum the server ever unmasks already carries the full noise. The server unwraps (centres) the
// sum, multiplies by γ and rotates back.
//
// γ is chosen as TFF's DistributedDpSumFactory does (Kairouz et al., §4.2 and §4.4): the summed
// coordinates are treated as sub-Gaussian, and γ is the smallest step for which k standard
// deviations of a coordinate of the noisy sum of n clients fit in the 2^b values of the ring,
//
//	2^b = 2k·√(ρ/D·(S·n)² + (γ²/4 + σ_loc²)·n) / γ,
//
// with ρ = 1 (the flatness of the rotated vector), D the padded dimension, σ_loc the standard
// deviation of one client's noise share in the units of the update, and k = √2·erfc⁻¹(p) for
// the modular-clipping probability p of one coordinate.

// DDPConfig configures distributed DP; it is part of the run's announced secure-sum parameters
// (the server and every client derive the same DDPParams from it and the model size).
type DDPConfig struct {
	Mechanism       string  `json:"mechanism"`        // MechanismSkellam or MechanismDDGauss
	Bits            int     `json:"bits"`             // b: the sum is taken in Z_{2^b}, b ≤ 22
	Clip            float64 `json:"clip"`             // S: the L2 clip of each update
	NoiseMultiplier float64 `json:"noise_multiplier"` // z: summed noise σ = z·Δ2 (Δ2 the sensitivity after rounding)
	// MinClients is the fewest noise shares a released sum may hold: each client's share is
	// 1/MinClients of the noise, and the server abandons a round with fewer survivors.
	MinClients int `json:"min_clients"`
	// Cohort is the expected number of clients per round, against which γ is sized.
	Cohort      float64 `json:"cohort"`
	ModClipProb float64 `json:"modclip_prob"` // probability that a coordinate of the sum wraps (default 1e-4)
	Beta        float64 `json:"beta"`         // conditional rounding's β (default e^{−1/2})
	// CountStddev, when > 0, turns on adaptive clipping (Andrew et al. 2021) in the distributed
	// setting: each client also sends its clipped-or-not indicator as ±1 plus its share of
	// integer noise for the count, in one more coordinate of the same secure sum, so the server
	// sees only the noised count. The summed count noise has standard deviation 2·CountStddev in
	// those ±1 units, i.e. CountStddev in the units of Σ(bᵢ − ½) that AdaptiveClipper uses.
	CountStddev float64 `json:"count_stddev,omitempty"`
}

// Defaults of distributed DP.
const (
	DefaultModClipProb = 1e-4
	MaxDDPBits         = 22
)

// DefaultDDPBeta is the conditional-rounding β of Kairouz et al. and TFF, e^{−1/2}.
var DefaultDDPBeta = math.Exp(-0.5)

// WithDefaults fills in ModClipProb and Beta.
func (c DDPConfig) WithDefaults() DDPConfig {
	if c.ModClipProb == 0 {
		c.ModClipProb = DefaultModClipProb
	}
	if c.Beta == 0 {
		c.Beta = DefaultDDPBeta
	}
	return c
}

// Validate checks the configuration (after WithDefaults).
func (c DDPConfig) Validate() error {
	switch {
	case c.Mechanism != MechanismSkellam && c.Mechanism != MechanismDDGauss:
		return fmt.Errorf("privacy: distributed DP mechanism %q: want %s or %s", c.Mechanism, MechanismSkellam, MechanismDDGauss)
	case c.Bits < 4 || c.Bits > MaxDDPBits:
		return fmt.Errorf("privacy: distributed DP bits must be in [4, %d], got %d", MaxDDPBits, c.Bits)
	case !(c.Clip > 0) || math.IsInf(c.Clip, 0):
		return fmt.Errorf("privacy: distributed DP clip must be finite and > 0, got %v", c.Clip)
	case !(c.NoiseMultiplier > 0) || math.IsInf(c.NoiseMultiplier, 0):
		return fmt.Errorf("privacy: distributed DP noise multiplier must be finite and > 0, got %v", c.NoiseMultiplier)
	case c.MinClients < 1:
		return fmt.Errorf("privacy: distributed DP needs a minimum of ≥ 1 noise shares, got %d", c.MinClients)
	case !(c.Cohort >= float64(c.MinClients)) || math.IsInf(c.Cohort, 0):
		return fmt.Errorf("privacy: distributed DP cohort %v must be finite and ≥ the minimum of %d clients", c.Cohort, c.MinClients)
	case !(c.ModClipProb > 0 && c.ModClipProb < 1):
		return fmt.Errorf("privacy: modular clipping probability must be in (0, 1), got %v", c.ModClipProb)
	case !(c.Beta > 0 && c.Beta < 1):
		return fmt.Errorf("privacy: conditional rounding β must be in (0, 1), got %v", c.Beta)
	case !(c.CountStddev >= 0) || math.IsInf(c.CountStddev, 0):
		return fmt.Errorf("privacy: the adaptive clip's count noise must be finite and ≥ 0, got %v", c.CountStddev)
	}
	if c.CountStddev > 0 {
		// The noised count Σ±1 + noise must not wrap in Z_{2^b}: room for a Poisson cohort 6
		// standard deviations above the expected one and k standard deviations of the noise.
		nMax := c.Cohort + 6*math.Sqrt(c.Cohort)
		k := math.Sqrt2 * math.Erfcinv(c.ModClipProb)
		if need := nMax + k*2*c.CountStddev*math.Sqrt(nMax/float64(c.MinClients)); need >= math.Ldexp(1, c.Bits-1) {
			return fmt.Errorf("privacy: %d bits cannot hold the adaptive clip's noised count of up to %.0f clients (|count| ≤ %.0f): raise the bits", c.Bits, nMax, need)
		}
	}
	return nil
}

// DDPParams are a round's derived parameters: what every client and the server compute from
// DDPConfig and the model size, and what an auditor needs.
type DDPParams struct {
	DDPConfig
	Dim       int     `json:"dim"`        // d: model parameters
	PaddedDim int     `json:"padded_dim"` // D: d padded to a power of two for the Hadamard transform
	Gamma     float64 `json:"gamma"`      // γ: the quantisation step (integer = value/γ)
	K         float64 `json:"k_stddevs"`  // k: standard deviations of the sum that fit in 2^b
	// L2 and L1 are the sensitivities of one client's integer vector after rotation, scaling
	// and conditional rounding: Δ2 = B(S)/γ with B the conditional-rounding bound, Δ1 =
	// min(√D·Δ2, Δ2²) (an integer vector has ‖v‖₁ ≤ ‖v‖₂²).
	L2 float64 `json:"l2_sensitivity"`
	L1 float64 `json:"l1_sensitivity"`
	// ShareParam is each client's noise share per coordinate: Skellam, its variance v (a
	// difference of two Poisson(v/2)); ddgauss, σ² of N_Z(0, σ²). MinClients shares make the
	// summed noise of parameter z²·Δ2².
	ShareParam float64 `json:"share_param"`
	// CountShare is each client's share of the adaptive clip's count noise, in the same form as
	// ShareParam, for a count of sensitivity 1 (0 without adaptive clipping): MinClients shares
	// make noise of variance (2·CountStddev)².
	CountShare float64 `json:"count_share,omitempty"`
}

// Params derives the parameters for a model of dim parameters.
func (c DDPConfig) Params(dim int) (DDPParams, error) {
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return DDPParams{}, err
	}
	if dim < 1 || dim > 1<<26 {
		return DDPParams{}, fmt.Errorf("privacy: distributed DP dimension %d out of range [1, 2²⁶]", dim)
	}
	p := DDPParams{DDPConfig: c, Dim: dim, PaddedDim: 1 << bits.Len(uint(dim-1))}
	D := float64(p.PaddedDim)
	n := c.Cohort
	p.K = math.Sqrt2 * math.Erfcinv(c.ModClipProb)
	sigLoc := c.NoiseMultiplier / math.Sqrt(float64(c.MinClients)) // σ of one share, in units of S
	half := math.Ldexp(1, c.Bits) / (2 * p.K)
	den := half*half - n/4
	if !(den > 0) {
		return DDPParams{}, fmt.Errorf("privacy: %d bits cannot hold %v standard deviations of a sum of %v clients: raise the bits or lower the cohort", c.Bits, p.K, n)
	}
	// γ and B(S) are both proportional to S: everything is derived for S = 1 and γ scaled by S
	// last, so Δ2 = B(S)/γ and the shares are the same bit for bit whatever the clip (a clip
	// moved by adaptive clipping keeps the noise tables cached; no S² can overflow).
	p.Gamma = math.Sqrt((n*n/D + n*sigLoc*sigLoc) / den)
	p.L2 = p.normBound(1) / p.Gamma
	p.Gamma *= c.Clip
	p.L1 = min(math.Sqrt(D)*p.L2, p.L2*p.L2)
	if p.L1 < p.L2 { // Δ2 < 1: the bound Δ1 ≤ Δ2² is below Δ2 only for a zero vector
		p.L1 = p.L2
	}
	// A subnormal clip makes γ 0; one near the float64 range, +Inf.
	if !(p.Gamma > 0) || math.IsInf(p.Gamma, 0) || !(p.L2 > 0) || math.IsInf(p.L2, 0) {
		return DDPParams{}, fmt.Errorf("privacy: distributed DP: degenerate quantisation step γ = %v (Δ2 = %v) for clip %v", p.Gamma, p.L2, c.Clip)
	}
	z := c.NoiseMultiplier
	p.ShareParam = z * z * p.L2 * p.L2 / float64(c.MinClients)
	if c.Mechanism == MechanismDDGauss && p.ShareParam < 0.25 {
		return DDPParams{}, fmt.Errorf("privacy: each client's discrete Gaussian share would have σ = %.3g < 1/2: raise the bits or the noise", math.Sqrt(p.ShareParam))
	}
	if c.CountStddev > 0 {
		p.CountShare = 4 * c.CountStddev * c.CountStddev / float64(c.MinClients)
		if c.Mechanism == MechanismDDGauss && p.CountShare < 0.25 {
			return DDPParams{}, fmt.Errorf("privacy: each client's discrete Gaussian count share would have σ = %.3g < 1/2: raise the count noise", math.Sqrt(p.CountShare))
		}
	}
	return p, nil
}

// normBound is B(norm), in the units of the update: the largest L2 norm of γ·(rounded vector)
// for a vector of that norm, B² = min{(‖x‖+γ√D)², ‖x‖² + γ²D/4 + √(2 ln 1/β)·γ·(‖x‖ + γ√D/2)}
// (Kairouz et al., Algorithm 1; the same bound as SecAgg's conditional rounding).
func (p *DDPParams) normBound(norm float64) float64 {
	g := p.Gamma
	rd := math.Sqrt(float64(p.PaddedDim))
	det := norm + g*rd
	return math.Sqrt(min(det*det, norm*norm+g*g*float64(p.PaddedDim)/4+math.Sqrt(2*math.Log(1/p.Beta))*g*(norm+g*rd/2)))
}

// Event is the accountant's description of a round whose sum holds shares noise shares.
func (p *DDPParams) Event(shares int) DiscreteEvent {
	return DiscreteEvent{Mechanism: p.Mechanism, L1: p.L1, L2: p.L2, ShareParam: p.ShareParam, Shares: shares, Dim: p.PaddedDim,
		CountShare: p.CountShare}
}

// SumStd is the standard deviation, in the units of the update, of one coordinate of the noise
// in a sum of shares shares (after the inverse rotation, which preserves it).
func (p *DDPParams) SumStd(shares int) float64 {
	return p.Gamma * math.Sqrt(float64(shares)*p.ShareParam)
}

// RotationSeed derives the public seed of a round's rotation from the run id and the round.
func RotationSeed(runID []byte, round uint64) [32]byte {
	h := sha256.New()
	h.Write([]byte("shoal/ddp rotation v1\x00"))
	h.Write(runID)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], round)
	h.Write(b[:])
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// signs returns the D random ±1 of the rotation's diagonal, from public randomness.
func signs(seed [32]byte, n int) []uint64 {
	r := rand.NewChaCha8(seed)
	out := make([]uint64, (n+63)/64)
	for i := range out {
		out[i] = r.Uint64()
	}
	return out
}

// applySigns multiplies x[i] by the i-th sign: a flip of the sign bit, without a branch (the
// signs are random, so a branch would be mispredicted half the time).
func applySigns(x []float64, s []uint64) {
	for w, bw := range s {
		blk := x[w*64 : min(w*64+64, len(x))]
		for k := range blk {
			blk[k] = math.Float64frombits(math.Float64bits(blk[k]) ^ (bw>>uint(k)&1)<<63)
		}
	}
}

// fwhtBlock is the number of entries transformed together while they sit in the L1 cache.
const fwhtBlock = 1 << 11

// fwht is the in-place unnormalised Walsh–Hadamard transform (len(x) a power of two). The
// levels of span < fwhtBlock run block by block in cache, the rest in radix-4 passes over the
// whole vector; the additions are those of the textbook radix-2 loop, in the same order, so
// the result is bit-identical to it (TestFWHTMatchesRadix2).
func fwht(x []float64) {
	n := len(x)
	if n <= fwhtBlock {
		fwhtLevels(x, 1, n)
		return
	}
	for i := 0; i < n; i += fwhtBlock {
		fwhtLevels(x[i:i+fwhtBlock], 1, fwhtBlock)
	}
	fwhtLevels(x, fwhtBlock, n)
}

// fwhtLevels applies the levels of span h = from, 2·from, … < to to x, two at a time.
func fwhtLevels(x []float64, from, to int) {
	h := from
	for ; 4*h <= to; h *= 4 {
		for i := 0; i < len(x); i += 4 * h {
			a := x[i : i+h]
			b := x[i+h : i+2*h]
			c := x[i+2*h : i+3*h]
			d := x[i+3*h : i+4*h]
			b, c, d = b[:len(a)], c[:len(a)], d[:len(a)]
			for j := range a {
				p, q := a[j]+b[j], a[j]-b[j]
				r, t := c[j]+d[j], c[j]-d[j]
				a[j], b[j], c[j], d[j] = p+r, q+t, p-r, q-t
			}
		}
	}
	if 2*h <= to {
		for i := 0; i < len(x); i += 2 * h {
			a := x[i : i+h]
			b := x[i+h : i+2*h]
			b = b[:len(a)]
			for j := range a {
				u, v := a[j], b[j]
				a[j], b[j] = u+v, u-v
			}
		}
	}
}

// Rotate applies the round's randomized Hadamard transform H·diag(s)/√D to x (padded to D).
func (p *DDPParams) Rotate(x []float64, seed [32]byte) {
	applySigns(x, signs(seed, len(x)))
	fwht(x)
	scale64(x, 1/math.Sqrt(float64(len(x))))
}

// Unrotate inverts Rotate: diag(s)·H/√D.
func (p *DDPParams) Unrotate(x []float64, seed [32]byte) {
	fwht(x)
	scale64(x, 1/math.Sqrt(float64(len(x))))
	applySigns(x, signs(seed, len(x)))
}

func scale64(x []float64, f float64) {
	for i := range x {
		x[i] *= f
	}
}

// maxDDPRoundingDraws bounds conditional rounding's redraws: each fails with probability at
// most β = e^{−1/2} ≈ 0.61 by Hoeffding's bound (far less in practice), so 200 all fail with
// probability below 10⁻⁴².
const maxDDPRoundingDraws = 200

// Encode is a client's half: clip update (d entries) to S, rotate with the round's public seed,
// scale by 1/γ, round conditionally on ‖·‖₂ ≤ Δ2, add this client's noise share drawn from src
// and reduce modulo 2^b. It returns D ring elements in [0, 2^b).
func (p *DDPParams) Encode(update []float32, seed [32]byte, src *Source) ([]uint32, error) {
	q, err := p.quantize(update, seed, src)
	if err != nil {
		return nil, err
	}
	defer putInts(q)
	if err := p.addShare(q, src); err != nil {
		return nil, err
	}
	return p.wrap(q), nil
}

// EncodeWithoutNoise is Encode less the noise share: for simulations that draw the summed
// noise of the cohort at once (SkellamSum; see docs/privacy.md), never for a real client.
func (p *DDPParams) EncodeWithoutNoise(update []float32, seed [32]byte, src *Source) ([]uint32, error) {
	q, err := p.quantize(update, seed, src)
	if err != nil {
		return nil, err
	}
	defer putInts(q)
	return p.wrap(q), nil
}

// quantize clips, pads, rotates, scales and conditionally rounds update. The scalings (the
// clip, the rotation's 1/√D and 1/γ) commute with the linear transform, so they are applied in
// one pass after it, and the random signs while the update is copied in.
func (p *DDPParams) quantize(update []float32, seed [32]byte, src *Source) ([]int64, error) {
	if len(update) != p.Dim {
		return nil, fmt.Errorf("privacy: distributed DP input has %d entries, the round %d", len(update), p.Dim)
	}
	x := getFloats(p.PaddedDim)
	defer putFloats(x)
	sg := signs(seed, p.PaddedDim)
	var n2 float64
	for i, v := range update {
		f := float64(v)
		if f-f != 0 { // NaN or ±Inf
			return nil, fmt.Errorf("privacy: distributed DP input entry %d is %v", i, v)
		}
		n2 += f * f
		x[i] = math.Float64frombits(math.Float64bits(f) ^ (sg[i>>6]>>(uint(i)&63)&1)<<63)
	}
	clear(x[p.Dim:])
	fwht(x)
	scale := 1 / (math.Sqrt(float64(p.PaddedDim)) * p.Gamma)
	if norm := math.Sqrt(n2); norm > p.Clip {
		scale *= p.Clip / norm
	}
	scale64(x, scale)
	q := getInts(p.PaddedDim)
	if err := p.roundConditional(x, q, src); err != nil {
		putInts(q)
		return nil, err
	}
	return q, nil
}

// Buffers of the encoder (2 MB each for the 2NN), reused across calls.
var floatPool, intPool sync.Pool

func getFloats(n int) []float64 {
	if b, ok := floatPool.Get().(*[]float64); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]float64, n)
}

func putFloats(b []float64) { floatPool.Put(&b) }

func getInts(n int) []int64 {
	if b, ok := intPool.Get().(*[]int64); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]int64, n)
}

func putInts(b []int64) { intPool.Put(&b) }

// wrap reduces q modulo 2^b.
func (p *DDPParams) wrap(q []int64) []uint32 {
	mask := int64(1)<<p.Bits - 1
	out := make([]uint32, len(q))
	for i, v := range q {
		out[i] = uint32(v & mask)
	}
	return out
}

// SkellamSum adds to ring (a sum in Z_{2^b} of shares clients' EncodeWithoutNoise vectors) the
// noise their Skellam shares would have added: a sum of independent Skellam variables is
// Skellam with the summed parameter, Σ (P_i − P'_i) = Poisson(Σμ) − Poisson(Σμ), and reducing
// modulo 2^b commutes with the sum, so the result has exactly the distribution of the sum of
// shares Encode vectors. Simulation only (one draw per coordinate instead of shares).
func (p *DDPParams) SkellamSum(ring []uint32, shares int, src *Source) error {
	if p.Mechanism != MechanismSkellam {
		return fmt.Errorf("privacy: the summed noise of %s shares is not of the same family; each client must draw its own", p.Mechanism)
	}
	if len(ring) != p.PaddedDim || shares < 1 {
		return fmt.Errorf("privacy: summed Skellam noise for %d entries of %d shares, the round has %d", len(ring), shares, p.PaddedDim)
	}
	q := make([]int64, len(ring))
	sum := *p
	sum.ShareParam = p.ShareParam * float64(shares)
	if err := sum.addShare(q, src); err != nil {
		return err
	}
	mask := uint32(1)<<p.Bits - 1
	for i, v := range q {
		ring[i] = (ring[i] + uint32(v)) & mask
	}
	return nil
}

// roundConditional rounds x (already in integer units) stochastically and without bias into q,
// redrawing until ‖q‖₂² ≤ Δ2², checked exactly on the integers (lowered by 2⁻³⁰ relative to
// absorb the floating-point error of Δ2², so that the bound holds for the exact values).
func (p *DDPParams) roundConditional(x []float64, q []int64, src *Source) error {
	limit := p.L2 * p.L2 * (1 - 0x1p-30)
	var rnd [randChunk]uint64
	for range maxDDPRoundingDraws {
		var hi, lo uint64
		for base := 0; base < len(x); base += randChunk {
			xs := x[base:min(base+randChunk, len(x))]
			qs := q[base : base+len(xs)]
			rs := rnd[:len(xs)]
			src.uint64s(rs)
			for i, v := range xs {
				f := math.Floor(v)
				r := int64(f)
				// Bernoulli(v − f) from 53 random bits.
				if float64(rs[i]>>11)*0x1p-53 < v-f {
					r++
				}
				qs[i] = r
				var c uint64
				lo, c = bits.Add64(lo, uint64(r*r), 0)
				hi += c
			}
		}
		if float64(hi)*0x1p64+float64(lo) <= limit {
			return nil
		}
	}
	return fmt.Errorf("privacy: %d draws of conditional rounding all exceeded the norm bound %v", maxDDPRoundingDraws, p.L2)
}

// addShare adds this client's noise share to every coordinate.
func (p *DDPParams) addShare(q []int64, src *Source) error {
	switch p.Mechanism {
	case MechanismSkellam:
		mu := p.ShareParam / 2
		if t := cachedTable("skellam", mu, func() *tableSampler { return newSkellamTable(mu) }); t != nil {
			t.addTo(q, src, false)
			return nil
		}
		if t := cachedTable("poisson", mu, func() *tableSampler { return newPoissonTable(mu) }); t != nil {
			t.addTo(q, src, false)
			t.addTo(q, src, true)
			return nil
		}
		ps := newPoissonSampler(mu)
		for i := range q {
			q[i] += ps.sample(src) - ps.sample(src)
		}
	case MechanismDDGauss:
		if t := cachedTable("dgauss", p.ShareParam, func() *tableSampler { return newDGaussTable(p.ShareParam) }); t != nil {
			t.addTo(q, src, false)
			return nil
		}
		g := newDGaussSampler(p.ShareParam)
		for i := range q {
			q[i] += g.sample(src)
		}
	default:
		return fmt.Errorf("privacy: unknown distributed mechanism %q", p.Mechanism)
	}
	return nil
}

// EncodeCount is a client's entry of the adaptive clip's count: +1 if its update was not
// clipped, −1 if it was, plus its share of the count noise (withNoise false: none, for the
// simulation path that draws the summed noise at once), modulo 2^b.
func (p *DDPParams) EncodeCount(unclipped, withNoise bool, src *Source) (uint32, error) {
	if p.CountShare == 0 {
		return 0, errors.New("privacy: distributed DP without adaptive clipping has no count")
	}
	v := int64(-1)
	if unclipped {
		v = 1
	}
	if withNoise {
		v += p.countNoise(src, 1)
	}
	return uint32(v) & (uint32(1)<<p.Bits - 1), nil
}

// countNoise draws the count noise of shares shares (exactly: Skellam shares add up to Skellam;
// for ddgauss only shares = 1 is a share's law).
func (p *DDPParams) countNoise(src *Source, shares int) int64 {
	v := p.CountShare * float64(shares)
	if p.Mechanism == MechanismSkellam {
		ps := newPoissonSampler(v / 2)
		return ps.sample(src) - ps.sample(src)
	}
	return newDGaussSampler(v).sample(src)
}

// SkellamCountSum adds to a count entry the summed Skellam noise of shares clients (see
// SkellamSum; simulation only).
func (p *DDPParams) SkellamCountSum(entry uint32, shares int, src *Source) (uint32, error) {
	if p.Mechanism != MechanismSkellam || p.CountShare == 0 || shares < 1 {
		return 0, errors.New("privacy: summed count noise needs Skellam shares and adaptive clipping")
	}
	return (entry + uint32(p.countNoise(src, shares))) & (uint32(1)<<p.Bits - 1), nil
}

// DecodeCount turns the count entry of the ring sum into the noised Σ(bᵢ − ½) that
// AdaptiveClipper.UpdateNoised takes.
func (p *DDPParams) DecodeCount(entry uint32) float64 {
	mask := uint32(1)<<p.Bits - 1
	c := int64(entry & mask)
	if c >= int64(1)<<(p.Bits-1) {
		c -= int64(mask) + 1
	}
	return float64(c) / 2
}

// Decode is the server's half: the ring sum (D entries in Z_{2^b}, or in a larger ring of
// 2^k ≥ 2^b, reduced here) centred into [−2^{b−1}, 2^{b−1}), multiplied by γ and rotated back;
// it returns the first d entries, the noisy sum in the units of the update.
func (p *DDPParams) Decode(ring []uint32, seed [32]byte) ([]float64, error) {
	if len(ring) != p.PaddedDim {
		return nil, fmt.Errorf("privacy: distributed DP sum has %d entries, the round %d", len(ring), p.PaddedDim)
	}
	mask := uint32(1)<<p.Bits - 1
	half := int64(1) << (p.Bits - 1)
	y := make([]float64, len(ring))
	for i, v := range ring {
		c := int64(v & mask)
		if c >= half {
			c -= int64(mask) + 1
		}
		y[i] = float64(c) * p.Gamma
	}
	p.Unrotate(y, seed)
	return y[:p.Dim], nil
}
