package data

import (
	"math"
	"math/rand/v2"
)

// Streams keep the random draws of different uses of one seed independent of each other, so
// that (for example) the same --seed gives unrelated partition and synthetic-data draws.
const (
	streamPartition uint64 = 0x5348_4f41_4c50_4152 // "SHOALPAR"
	streamSynthetic uint64 = 0x5348_4f41_4c53_594e // "SHOALSYN"
)

// newRand returns a deterministic generator for seed on the given stream. PCG is not a CSPRNG:
// it is only used for experiment set-up (which examples go where), never for keys or noise.
func newRand(seed, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, stream))
}

// logGamma draws log(G) for G ~ Gamma(shape, 1). Working in logs keeps tiny shapes (Dirichlet
// α = 0.01) meaningful: G itself would underflow to 0 for every client.
func logGamma(r *rand.Rand, shape float64) float64 {
	if shape < 1 {
		// Gamma(a) = Gamma(a+1)·U^(1/a) (Marsaglia and Tsang 2000, §6).
		u := 1 - r.Float64() // (0, 1]
		return logGamma(r, shape+1) + math.Log(u)/shape
	}
	// Marsaglia and Tsang (2000), "A simple method for generating gamma variables".
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := r.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := 1 - r.Float64()
		x2 := x * x
		if u < 1-0.0331*x2*x2 || math.Log(u) < 0.5*x2+d*(1-v+math.Log(v)) {
			return math.Log(d * v)
		}
	}
}

// dirichlet fills p with a draw from the symmetric Dirichlet(alpha, …, alpha) distribution.
func dirichlet(r *rand.Rand, alpha float64, p []float64) {
	hi := math.Inf(-1)
	for i := range p {
		p[i] = logGamma(r, alpha)
		hi = max(hi, p[i])
	}
	if math.IsInf(hi, -1) { // every draw underflowed (α ≈ 1e-308): the α → 0 limit, one winner
		clear(p)
		p[r.IntN(len(p))] = 1
		return
	}
	sum := 0.0
	for i := range p {
		p[i] = math.Exp(p[i] - hi)
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
}
