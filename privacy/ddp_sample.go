package privacy

import "math"

// Noise-share samplers of distributed DP: Poisson (two of which make a Skellam share) and the
// discrete Gaussian of any σ. Both are rejection samplers that draw uniform 53-bit values from a
// Source (AES-CTR keyed from crypto/rand) and return integers, so no floating-point value of
// the noise ever reaches the update (Mironov's attack needs floating-point noise). They
// evaluate their acceptance tests in float64: each output's probability is the ideal one up to
// a relative error of order 10⁻¹³ (the error of exp, log and lgamma in float64, and of 53-bit
// uniforms), a max-divergence of the same order per coordinate that docs/privacy.md states
// next to ε. (The exact big-integer sampler, SampleDiscreteGaussianExact, takes ~3 µs per draw,
// too slow for the 262,144 draws of a client's share.)

// uniform53 returns a uniform value in (0, 1].
func uniform53(src *Source) float64 { return float64(src.Uint64()>>11+1) * 0x1p-53 }

// poissonSampler draws Poisson(μ): by inversion for μ < 10, by Hörmann's transformed rejection
// with squeeze (PTRS, "The transformed rejection method for generating Poisson random
// variables", 1993) above.
type poissonSampler struct {
	mu, logMu, expNeg            float64
	b, a, invAlpha, vr, logAlpha float64
}

func newPoissonSampler(mu float64) *poissonSampler {
	p := &poissonSampler{mu: mu, logMu: math.Log(mu), expNeg: math.Exp(-mu)}
	if mu >= 10 {
		s := math.Sqrt(mu)
		p.b = 0.931 + 2.53*s
		p.a = -0.059 + 0.02483*p.b
		p.invAlpha = 1.1239 + 1.1328/(p.b-3.4)
		p.vr = 0.9277 - 3.6224/(p.b-2)
		p.logAlpha = math.Log(p.invAlpha)
	}
	return p
}

func (p *poissonSampler) sample(src *Source) int64 {
	if p.mu < 10 {
		u := uniform53(src)
		k := int64(0)
		prob := p.expNeg
		cdf := prob
		for u > cdf && prob > 0 {
			k++
			prob *= p.mu / float64(k)
			cdf += prob
		}
		return k
	}
	for {
		u := uniform53(src) - 0.5
		v := uniform53(src)
		us := 0.5 - math.Abs(u)
		k := math.Floor((2*p.a/us+p.b)*u + p.mu + 0.43)
		if us >= 0.07 && v <= p.vr {
			return int64(k)
		}
		if k < 0 || (us < 0.013 && v > us) {
			continue
		}
		lg, _ := math.Lgamma(k + 1)
		if math.Log(v)+p.logAlpha-math.Log(p.a/(us*us)+p.b) <= -p.mu+k*p.logMu-lg {
			return int64(k)
		}
	}
}

// dgaussSampler draws N_Z(0, σ²) by Canonne, Kamath and Steinke's Algorithm 3: a discrete
// Laplace proposal of scale t = ⌊σ⌋ + 1, accepted with probability exp(−(|Y| − σ²/t)²/(2σ²)).
type dgaussSampler struct {
	sigma2, t, invT, c float64
}

func newDGaussSampler(sigma2 float64) *dgaussSampler {
	t := math.Floor(math.Sqrt(sigma2)) + 1
	return &dgaussSampler{sigma2: sigma2, t: t, invT: 1 / t, c: sigma2 / t}
}

func (g *dgaussSampler) sample(src *Source) int64 {
	for {
		// Discrete Laplace of scale t: a geometric magnitude of ratio e^{−1/t}, a sign, and
		// (−, 0) rejected so that 0 is not counted twice.
		m := math.Floor(-g.t * math.Log(uniform53(src)))
		neg := src.Uint64()&1 == 1
		if neg && m == 0 {
			continue
		}
		d := m - g.c
		if uniform53(src) <= math.Exp(-d*d/(2*g.sigma2)) {
			if neg {
				return -int64(m)
			}
			return int64(m)
		}
	}
}
