package he

import (
	"math"

	"github.com/tuneinsight/lattigo/v6/ring"
)

// encodeValue writes round(v·Δ) mod q_j into coeffs[j][i] for every prime. v must be
// finite with |v| ≤ Capacity (checked by the caller). The conversion is exact: v is
// split into its 53-bit mantissa and exponent, and the power of two is applied modulo
// each prime, so no big integers and no allocation are needed.
func (p *Params) encodeValue(v float64, coeffs [][]uint64, i int) {
	if v == 0 {
		for j := range coeffs {
			coeffs[j][i] = 0
		}
		return
	}
	frac, exp := math.Frexp(v) // v = frac·2^exp, 0.5 ≤ |frac| < 1
	mant := int64(frac * (1 << 53))
	neg := mant < 0
	if neg {
		mant = -mant
	}
	shift := exp - 53 + p.logScale // round(v·Δ) = mant·2^shift
	if shift >= 0 {
		for j, q := range p.moduli {
			r := ring.BRed(uint64(mant), p.pow2Mod[j][shift], q, p.bredConst[j])
			if neg && r != 0 {
				r = q - r
			}
			coeffs[j][i] = r
		}
		return
	}
	var m uint64
	if s := -shift; s < 64 {
		m = (uint64(mant) + (uint64(1)<<s)>>1) >> s // round half up on the magnitude
	}
	for j, q := range p.moduli {
		r := m % q
		if neg && r != 0 {
			r = q - r
		}
		coeffs[j][i] = r
	}
}

// decodeValue reconstructs the centred integer x ∈ (−Q/2, Q/2] from its residues in
// coeffs[·][i] (Garner's mixed-radix conversion with balanced digits, which yields the
// centred representative directly) and returns x/Δ.
func (p *Params) decodeValue(coeffs [][]uint64, i int, digits []int64) float64 {
	for k, qk := range p.moduli {
		// acc = (a_0 + a_1·q_0 + … + a_{k-1}·q_0…q_{k-2}) mod q_k
		var acc uint64
		for j := 0; j < k; j++ {
			a := reduceSigned(digits[j], qk)
			acc += ring.BRed(a, p.prefixMod[k][j], qk, p.bredConst[k])
			if acc >= qk {
				acc -= qk
			}
		}
		y := coeffs[k][i] + qk - acc
		if y >= qk {
			y -= qk
		}
		if k > 0 {
			y = ring.BRed(y, p.prefixInv[k], qk, p.bredConst[k])
		}
		if y > qk>>1 {
			digits[k] = int64(y) - int64(qk)
		} else {
			digits[k] = int64(y)
		}
	}
	x := 0.0
	for k := len(p.moduli) - 1; k >= 0; k-- {
		x += float64(digits[k]) * p.prefixFloat[k]
	}
	return math.Ldexp(x, -p.logScale)
}

// reduceSigned maps a signed digit (|a| < 2^62) to [0, q).
func reduceSigned(a int64, q uint64) uint64 {
	if a >= 0 {
		return uint64(a) % q
	}
	r := uint64(-a) % q
	if r == 0 {
		return 0
	}
	return q - r
}

// decodeRange decodes coefficients 0 … len(dst)−1 into dst. Two-prime parameters (the
// default) take a straight-line path; others use decodeValue.
func (p *Params) decodeRange(coeffs [][]uint64, dst []float64, digits []int64) {
	if len(p.moduli) != 2 {
		for i := range dst {
			dst[i] = p.decodeValue(coeffs, i, digits)
		}
		return
	}
	q0, q1 := p.moduli[0], p.moduli[1]
	half0, half1 := q0>>1, q1>>1
	inv, bred1 := p.prefixInv[1], p.bredConst[1]
	q0f := p.prefixFloat[1]
	scale := math.Ldexp(1, -p.logScale)
	r0, r1 := coeffs[0][:len(dst)], coeffs[1][:len(dst)]
	for i := range dst {
		x0 := r0[i]
		// a0 = centred x0; y = (x1 − a0)·q0⁻¹ mod q1, then centred.
		var a0 int64
		var a0mod1 uint64
		if x0 > half0 {
			a0 = int64(x0) - int64(q0)
			a0mod1 = reduceSigned(a0, q1)
		} else {
			a0 = int64(x0)
			a0mod1 = x0
			if a0mod1 >= q1 {
				a0mod1 -= q1
			}
		}
		y := r1[i] + q1 - a0mod1
		if y >= q1 {
			y -= q1
		}
		y = ring.BRed(y, inv, q1, bred1)
		a1 := int64(y)
		if y > half1 {
			a1 -= int64(q1)
		}
		dst[i] = (float64(a1)*q0f + float64(a0)) * scale
	}
}
