package he

import (
	crand "crypto/rand"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/tuneinsight/lattigo/v6/ring"
)

// smudger adds noise of standard deviation ≈ 2^logSigma to polynomials in the coefficient
// domain, with every integer resolution down to 1: a smudging distribution with holes
// (values confined to a coarse grid) would not hide the low bits of the ciphertext noise.
//
// Go's NormFloat64 (a ziggurat) returns j·w for a 32-bit j, so z·σ lies on a grid of
// spacing about σ·2^−29.2. A sample is therefore a sum of components
//
//	round(z_0·σ_0) + round(z_1·σ_1) + … ,  z_k ~ N(0, 1) independent,
//
// with σ_0 = 2^logSigma and each next σ_{k+1} = 2^⌈log2(grid_k) + 6⌉ at least 64 times the
// grid of the previous one, until the grid is below 1. A Gaussian 64 grid steps wide
// smooths a grid to within exp(−2π²·64²) of uniform, so the sum is a discrete Gaussian of
// variance Σσ_k² (= σ_0²·(1 + 2^−46) for the default) up to a negligible distance. Large
// components are computed as round(z·2^49)·2^(log σ − 49) and reduced modulo each prime
// with one modular multiplication: no big integers, no allocation per coefficient.
// The randomness is a ChaCha8 stream seeded from crypto/rand.
type smudger struct {
	p        *Params
	rng      *rand.Rand
	comps    []smudgeComponent
	bigShift []int // shifts of the components with shift > 0, in order
}

type smudgeComponent struct {
	scale float64 // 2^min(logSigma, 49)
	shift int     // logSigma − min(logSigma, 49): the sample is round(z·scale)·2^shift
}

// zigguratGridLog2 is log2 of the widest spacing of NormFloat64's outputs: the largest
// layer width 3.4426 divided by 2^31.
var zigguratGridLog2 = math.Log2(3.442619855899) - 31

func smudgeComponents(logSigma int) []smudgeComponent {
	var comps []smudgeComponent
	ls := logSigma
	for {
		a := min(ls, 49)
		comps = append(comps, smudgeComponent{scale: math.Exp2(float64(a)), shift: ls - a})
		grid := float64(ls) + zigguratGridLog2 // log2 of this component's spacing
		if grid < 0 {
			return comps
		}
		ls = int(math.Ceil(grid + 6))
	}
}

// newSmudger seeds a ChaCha8 stream (a CSPRNG) from crypto/rand.
func newSmudger(p *Params) (*smudger, error) {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("he: seeding smudging noise: %w", err)
	}
	sm := &smudger{p: p, rng: rand.New(rand.NewChaCha8(seed)), comps: smudgeComponents(p.logSmudging)}
	for _, c := range sm.comps {
		if c.shift > 0 {
			sm.bigShift = append(sm.bigShift, c.shift)
		}
	}
	if len(sm.bigShift) > 4 {
		return nil, fmt.Errorf("he: smudging σ = 2^%d needs %d wide components", p.logSmudging, len(sm.bigShift))
	}
	return sm, nil
}

// addTo adds one independent noise sample to every coefficient of pol (all primes);
// pol's coefficients may be lazily reduced (in [0, 2q)), the result is fully reduced.
// Components that fit an int64 (shift 0) are summed exactly first, so each prime costs
// one signed reduction plus one modular multiplication per shifted component.
func (s *smudger) addTo(pol ring.Poly) {
	p := s.p
	coeffs := pol.Coeffs
	n := p.N()
	var bigH [4]uint64 // |round(z·scale)| of the shifted components (at most 4 for σ ≤ 2^100)
	var bigNeg [4]bool
	for i := 0; i < n; i++ {
		var low int64
		nb := 0
		for _, c := range s.comps {
			z := s.rng.NormFloat64() * c.scale
			if c.shift == 0 {
				low += int64(math.Round(z)) // |z| < 2^53 and the small components sum below 2^63
				continue
			}
			bigNeg[nb] = z < 0
			bigH[nb] = uint64(math.Abs(z) + 0.5)
			nb++
		}
		for j, q := range p.moduli {
			var r uint64
			if low >= 0 && uint64(low) < q {
				r = uint64(low)
			} else if low < 0 && uint64(-low) < q {
				r = q - uint64(-low)
			} else {
				r = reduceSigned(low, q)
			}
			for b := 0; b < nb; b++ {
				h := bigH[b]
				if h >= q { // only for primes below 2^53
					h %= q
				}
				t := ring.BRed(h, p.pow2Mod[j][s.bigShift[b]], q, p.bredConst[j])
				if bigNeg[b] {
					t = q - t // t ∈ [1, q] here; q − 0 = q is reduced below
				}
				r += t
				if r >= q {
					r -= q
				}
				if r >= q {
					r -= q
				}
			}
			c := coeffs[j][i]
			if c >= q { // inputs may be lazily reduced, in [0, 2q)
				c -= q
			}
			v := c + r
			if v >= q {
				v -= q
			}
			coeffs[j][i] = v
		}
	}
}

// smudgingSigma is the standard deviation of the smudger's samples.
func smudgingSigma(logSigma int) float64 {
	var v float64
	for _, c := range smudgeComponents(logSigma) {
		s := c.scale * math.Exp2(float64(c.shift))
		v += s * s
	}
	return math.Sqrt(v)
}
