package he

import (
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"

	"github.com/tuneinsight/lattigo/v6/ring"
)

// smudger adds Gaussian noise of standard deviation 2^logSigma to polynomials in the
// coefficient domain. Lattigo's Gaussian sampler works in float64 and so cannot give
// σ ≥ 2^50 with all low bits random; here a sample is round(z·2^49)·2^k + u with
// z ~ N(0,1) and u uniform on [−2^(k−1), 2^(k−1)), k = logSigma − 49, reduced modulo
// each prime with two modular multiplications and no big integers.
type smudger struct {
	p        *Params
	rng      *rand.Rand
	hiShift  int // k: bits filled by the uniform part (0 when σ < 2^50)
	hiScale  float64
	lowRange uint64
}

// newSmudger seeds a ChaCha8 stream (a CSPRNG) from crypto/rand.
func newSmudger(p *Params) (*smudger, error) {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("he: seeding smudging noise: %w", err)
	}
	s := &smudger{p: p, rng: rand.New(rand.NewChaCha8(seed))}
	if p.logSmudging > 49 {
		s.hiShift = p.logSmudging - 49
		s.hiScale = 1 << 49
		s.lowRange = uint64(1) << s.hiShift
	} else {
		s.hiScale = float64(uint64(1) << p.logSmudging)
	}
	return s, nil
}

// addTo adds one independent noise sample to every coefficient of pol (level = all primes).
func (s *smudger) addTo(pol ring.Poly) {
	p := s.p
	coeffs := pol.Coeffs
	n := p.N()
	for i := 0; i < n; i++ {
		z := s.rng.NormFloat64() * s.hiScale
		var hi int64
		if z >= 0 {
			hi = int64(z + 0.5)
		} else {
			hi = -int64(-z + 0.5)
		}
		var low int64
		if s.hiShift > 0 {
			low = int64(s.rng.Uint64N(s.lowRange)) - int64(s.lowRange>>1)
		}
		negHi := hi < 0
		if negHi {
			hi = -hi
		}
		for j, q := range p.moduli {
			r := uint64(hi)
			if r >= q { // only for primes below 2^53
				r %= q
			}
			if s.hiShift > 0 {
				r = ring.BRed(r, p.pow2Mod[j][s.hiShift], q, p.bredConst[j])
			}
			if negHi && r != 0 {
				r = q - r
			}
			if low >= 0 && uint64(low) < q {
				r += uint64(low)
			} else if low < 0 && uint64(-low) < q {
				r += q - uint64(-low)
			} else {
				r += reduceSigned(low, q)
			}
			if r >= q {
				r -= q
			}
			c := coeffs[j][i] + r
			if c >= q {
				c -= q
			}
			coeffs[j][i] = c
		}
	}
}
