package privacy

import (
	"errors"
	"fmt"
	"math"
)

// GaussianNoise adds Gaussian noise to vectors the way a deployment can trust: the result of
// noising x is exactly γ·(round(x/γ) + K), with K a vector of independent discrete Gaussians
// N_Z(0, σ_K²) (see SampleDiscreteGaussian) and γ = σ/σ_K a lattice step fine enough that
// rounding costs almost nothing.
//
// Why this resists Mironov's attack (2012): the attack reads the data off the low-order bits of
// x + float-noise, whose set of reachable outputs depends on x. Here the released value is the
// integer round(x/γ) + K, computed exactly in int64; every integer is reachable from every
// input, and each output's probability is exactly the discrete Gaussian pmf (to the 2⁻¹¹¹
// max-log distance proved for the sampler). Conversion to float32 afterwards is
// post-processing of the integer and cannot leak more.
//
// Why the accountants apply. For neighbouring lattice points c, c′ = c + v the privacy loss is
// exactly the Gaussian one, a function of ⟨K, v⟩ only. Without sampling (q = 1), Canonne,
// Kamath, Steinke (2020) prove the discrete Gaussian's Rényi divergences are at most the
// continuous Gaussian's, in any dimension. With Poisson sampling the RDP quantities are
// moments E[g(⟨K, v⟩)] of a function g analytic in a strip of half-width ≥ π·σ_K·z lattice
// steps around the real axis; summing it over the lattice instead of integrating is a
// trapezoidal rule, off by a relative e^{−2π²σ_K·z} per coordinate — nothing, at σ_K ≈ 2·10⁶.
// The PLD accountant's tail probabilities are a step function on the lattice rather than a
// smooth one, which can shift them by a relative ~1/σ_K ≈ 5·10⁻⁷; that is the one place where
// the continuous idealisation is not exact, and it is far inside δ's precision.
//
// The rounding is a deterministic function of the data, so it enlarges the L2 sensitivity from
// Δ to at most Δ + 1.25·γ·√d (each coordinate moves by ≤ ½ + ⅛ lattice steps, the ⅛ covering
// float64 division error, which is why |x/γ| ≤ 2⁵⁰ is required). GaussianNoise pays for it
// exactly: it picks γ so that σ_K·γ / (Δ + 1.25γ√d) = σ/Δ, i.e. the noise multiplier the caller
// asked for holds for the rounded vector; the realised deviation Sigma() is larger than σ by the
// factor 1/(1 − 1.25·(σ/Δ)·√d/σ_K) — 0.06% for a million parameters at noise multiplier 1.
type GaussianNoise struct {
	requested   float64 // σ asked for
	sensitivity float64 // Δ
	dim         int
	step        float64 // γ
	invStep     float64
}

// maxLatticeCoord bounds |x/γ| so that float64 division is off by at most ⅛ of a lattice step.
const maxLatticeCoord = 1 << 50

// NewGaussianNoise prepares noise of standard deviation (at least) sigma for vectors of dim
// coordinates whose L2 sensitivity is sensitivity.
func NewGaussianNoise(sigma, sensitivity float64, dim int) (*GaussianNoise, error) {
	if err := checkPositiveFinite("noise standard deviation", sigma); err != nil {
		return nil, err
	}
	if err := checkPositiveFinite("sensitivity", sensitivity); err != nil {
		return nil, err
	}
	if dim <= 0 {
		return nil, fmt.Errorf("privacy: noise dimension must be > 0, got %d", dim)
	}
	z := sigma / sensitivity
	slack := 1.25 * z * math.Sqrt(float64(dim)) // in lattice steps
	if slack > latticeSigma/2 {
		return nil, fmt.Errorf("privacy: noise multiplier %.3g over %d coordinates needs a finer lattice than σ_K = %.3g allows (rounding would cost over half the noise)", z, dim, latticeSigma)
	}
	step := sigma / (latticeSigma - slack)
	return &GaussianNoise{requested: sigma, sensitivity: sensitivity, dim: dim, step: step, invStep: 1 / step}, nil
}

// Sigma is the standard deviation of the noise actually added (≥ the requested one).
func (g *GaussianNoise) Sigma() float64 { return latticeSigma * g.step }

// Step is the lattice step γ: every output is an integer multiple of it.
func (g *GaussianNoise) Step() float64 { return g.step }

// Dim is the vector length the noise was calibrated for.
func (g *GaussianNoise) Dim() int { return g.dim }

var errDim = errors.New("privacy: dimension mismatch")

// noiseChunk is how many integer noise values are drawn at a time (a 16 KB scratch buffer).
const noiseChunk = 2048

// Add64 writes the noised x into dst (dst[i] = γ·(round(x[i]/γ) + K_i) as float32). x holds a
// float64 aggregate, e.g. the engine's weighted sum. dst and x must both have length Dim().
func (g *GaussianNoise) Add64(dst []float32, x []float64, src *Source) error {
	return g.AddScaled64(dst, x, 1, src)
}

// AddScaled64 is Add64 followed by multiplication by scale (post-processing of the lattice
// point, so it costs no privacy): dst[i] = scale·γ·(round(x[i]/γ) + K_i).
func (g *GaussianNoise) AddScaled64(dst []float32, x []float64, scale float64, src *Source) error {
	if math.IsNaN(scale) || math.IsInf(scale, 0) {
		return fmt.Errorf("privacy: add noise: scale %v: %w", scale, ErrNonFinite)
	}
	if len(x) != g.dim || len(dst) != g.dim {
		return fmt.Errorf("%w: noise calibrated for %d coordinates, got input %d and output %d", errDim, g.dim, len(x), len(dst))
	}
	// Validate everything before writing anything, so a bad input leaves dst (which may be x)
	// untouched.
	for i, v := range x {
		if !(math.Abs(v*g.invStep) <= maxLatticeCoord) { // also catches NaN
			return g.coordErr(i, v)
		}
	}
	var k [noiseChunk]int64
	out := g.step * scale
	for off := 0; off < len(x); off += noiseChunk {
		n := min(noiseChunk, len(x)-off)
		xs, ds, ks := x[off:off+n], dst[off:off+n], k[:n]
		fillDiscreteGaussian(ks, src)
		for i, v := range xs {
			ds[i] = float32(float64(roundHalfEven(v*g.invStep)+ks[i]) * out)
		}
	}
	return nil
}

// Add32 is Add64 for a float32 vector; dst may alias x (noise in place).
func (g *GaussianNoise) Add32(dst, x []float32, src *Source) error {
	if len(x) != g.dim || len(dst) != g.dim {
		return fmt.Errorf("%w: noise calibrated for %d coordinates, got input %d and output %d", errDim, g.dim, len(x), len(dst))
	}
	for i, v := range x {
		if !(math.Abs(float64(v)*g.invStep) <= maxLatticeCoord) {
			return g.coordErr(i, float64(v))
		}
	}
	var k [noiseChunk]int64
	for off := 0; off < len(x); off += noiseChunk {
		n := min(noiseChunk, len(x)-off)
		xs, ds, ks := x[off:off+n], dst[off:off+n], k[:n]
		fillDiscreteGaussian(ks, src)
		for i, v := range xs {
			ds[i] = float32(float64(roundHalfEven(float64(v)*g.invStep)+ks[i]) * g.step)
		}
	}
	return nil
}

// roundHalfEven rounds c to the nearest integer (ties to even) for |c| ≤ 2⁵⁰ by the
// 1.5·2⁵² trick: the addition rounds away the fraction exactly (math.RoundToEven is not a
// machine instruction on every amd64 target, and this loop runs per coordinate).
func roundHalfEven(c float64) int64 {
	const magic = 0x1.8p52
	return int64((c + magic) - magic)
}

func (g *GaussianNoise) coordErr(i int, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("privacy: add noise: coordinate %d is %v: %w", i, v, ErrNonFinite)
	}
	return fmt.Errorf("privacy: add noise: coordinate %d = %g is over 2⁵⁰ lattice steps (%g); the value is implausibly large next to noise σ = %g", i, v, g.step, g.requested)
}

// lattice64 returns the integer lattice coordinates round(x/γ) + K; the released vector is
// γ times them. It exists for tests that check exactness.
func (g *GaussianNoise) lattice64(x []float64, src *Source) ([]int64, error) {
	out := make([]int64, len(x))
	fillDiscreteGaussian(out, src)
	for i, v := range x {
		c := v * g.invStep
		if !(math.Abs(c) <= maxLatticeCoord) {
			return nil, g.coordErr(i, v)
		}
		out[i] += int64(math.RoundToEven(c))
	}
	return out, nil
}
