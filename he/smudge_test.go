package he

import (
	"math"
	"testing"
)

// centredResidue returns the centred integer of coefficient i as a float64 and modulo
// 2^64 (two's complement), for two-prime parameters.
func centredResidue(p *Params, coeffs [][]uint64, i int) (float64, uint64) {
	digits := make([]int64, len(p.moduli))
	x := p.decodeValue(coeffs, i, digits) // fills the balanced Garner digits
	var low uint64
	mul := uint64(1)
	for k, q := range p.moduli {
		low += uint64(digits[k]) * mul
		mul *= q
	}
	return math.Ldexp(x, p.logScale), low
}

// TestSmudgingNoiseIsFullResolution checks the smudging distribution: its standard
// deviation, and that its low bits are uniform at every scale — a sampler whose outputs
// lie on a coarse grid (as z·σ with z from a 32-bit ziggurat does) would leave the
// ciphertext noise readable in the low bits of the decryption.
func TestSmudgingNoiseIsFullResolution(t *testing.T) {
	for _, logSigma := range []int{40, 63} {
		lit := DefaultParamsLiteral
		lit.LogSmudging = logSigma
		p, err := NewParams(lit)
		if err != nil {
			t.Fatal(err)
		}
		sm, err := newSmudger(p)
		if err != nil {
			t.Fatal(err)
		}
		const polys = 4
		n := p.N() * polys
		var sumSq float64
		lows := make([]uint64, 0, n)
		for k := 0; k < polys; k++ {
			pol := p.rlwe.RingQ().NewPoly()
			sm.addTo(pol)
			for i := 0; i < p.N(); i++ {
				x, low := centredResidue(p, pol.Coeffs, i)
				sumSq += x * x
				lows = append(lows, low)
			}
		}
		sigma := math.Sqrt(sumSq / float64(n))
		want := smudgingSigma(logSigma)
		if math.Abs(sigma/want-1) > 0.03 {
			t.Fatalf("σ = 2^%d: measured %.4g, want %.4g", logSigma, sigma, want)
		}
		// The top 6 bits of x mod 2^k must be uniform for every k up to σ's scale.
		for k := 6; k <= logSigma-4; k += 3 {
			var bins [64]float64
			for _, low := range lows {
				bins[(low>>(k-6))&63]++
			}
			exp := float64(n) / 64
			chi2 := 0.0
			for _, b := range bins {
				chi2 += (b - exp) * (b - exp) / exp
			}
			// 63 degrees of freedom: P(χ² > 120) ≈ 2·10⁻⁵.
			if chi2 > 120 {
				t.Fatalf("σ = 2^%d: x mod 2^%d is not uniform (χ² = %.0f)", logSigma, k, chi2)
			}
		}
	}
}

// TestSmudgeComponentsCoverEveryScale checks the construction: each component's grid
// (σ_k·2^−29.2, NormFloat64's resolution) is at most 1/64 of the next component's σ, and
// the last one's is below one integer step.
func TestSmudgeComponentsCoverEveryScale(t *testing.T) {
	for logSigma := 0; logSigma <= maxLogSmudging; logSigma++ {
		comps := smudgeComponents(logSigma)
		if got := comps[0].scale * math.Exp2(float64(comps[0].shift)); got != math.Exp2(float64(logSigma)) {
			t.Fatalf("2^%d: first component σ = %g", logSigma, got)
		}
		for k, c := range comps {
			logS := math.Log2(c.scale) + float64(c.shift)
			grid := logS + zigguratGridLog2
			if c.scale > 1<<49 {
				t.Fatalf("2^%d: component %d rounds z·%g, beyond float64's exact integers", logSigma, k, c.scale)
			}
			if k == len(comps)-1 {
				if grid >= 0 {
					t.Fatalf("2^%d: last component's grid is 2^%.1f", logSigma, grid)
				}
				continue
			}
			next := math.Log2(comps[k+1].scale) + float64(comps[k+1].shift)
			if next < grid+6 {
				t.Fatalf("2^%d: component %d's grid 2^%.1f not smoothed by σ = 2^%.0f", logSigma, k, grid, next)
			}
			if next > logS-20 {
				t.Fatalf("2^%d: component %d (2^%.0f) too large next to 2^%.0f", logSigma, k+1, next, logS)
			}
		}
		if s := smudgingSigma(logSigma); math.Abs(s/math.Exp2(float64(logSigma))-1) > 1e-6 {
			t.Fatalf("2^%d: total σ %g", logSigma, s)
		}
	}
}
