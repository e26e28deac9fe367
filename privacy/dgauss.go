package privacy

import (
	"encoding/binary"
	"math"
	"math/big"
	"math/bits"
	"sync"
)

// The fast discrete Gaussian sampler.
//
// Target: K ~ N_Z(0, σ_K²), the discrete Gaussian on the integers (P[K = k] ∝ exp(−k²/(2σ_K²)))
// with σ_K ≈ 2.1·10⁶, a few nanoseconds per draw, from secure random bits, with a proof of how
// far it is from the ideal distribution.
//
// Construction. K = X₁ + t·X₂ with X₁, X₂ independent draws of the base discrete Gaussian
// N_Z(0, σ₀²), σ₀ = 2048, and t = 1023. Completing the square,
//
//	P[X₁ + tX₂ = k] ∝ Σ_j exp(−((k−tj)² + j²)/(2σ₀²))
//	               = exp(−k²/(2σ₀²(1+t²))) · Σ_j exp(−(j − c_k)²/(2w²)),
//
// with c_k = kt/(1+t²) and w = σ₀/√(1+t²) ≥ 2. By Poisson summation the theta sum equals
// w√(2π)·(1 + 2Σ_{m≥1} e^{−2π²w²m²} cos(2πm c_k)), so it depends on k only through a relative
// factor within 1 ± 2.1·e^{−2π²w²} ⊂ 1 ± 2⁻¹¹². Hence the pmf of K is within a multiplicative
// factor e^{±2⁻¹¹¹} of the exact N_Z(0, σ_K²) pmf, σ_K² = σ₀²(1+t²), at every integer: a
// max-log distance that no privacy analysis can notice (it changes every Rényi divergence and ε
// by less than 2⁻¹⁰⁰ per coordinate). This is the convolution lemma of Micciancio–Walter 2017
// ("Gaussian sampling over the integers: efficient, generic, constant-time"), checked directly.
//
// Base sampler. N_Z(0, σ₀²) restricted to |k| ≤ 14σ₀ (the mass outside is below 2⁻¹⁴⁰) is sampled
// with Walker's alias method over 2¹⁶ buckets. The table is built once, in exact integer
// arithmetic, from probabilities computed with 256-bit big.Float and rounded to multiples of
// 2⁻¹⁴⁰, so the sampled distribution is within statistical distance 2⁻¹²⁰ of the truncated
// target. A draw takes a uniform 16-bit bucket and a uniform 124-bit threshold compared lazily:
// the top 32 bits decide unless they tie with the table (probability 2⁻³²), in which case 92
// more bits are drawn. Every branch is decided by exact integer comparisons of random bits:
// no floating-point number is involved in sampling, which is what defeats Mironov's attack.
const (
	baseSigma      = 2048
	baseTail       = 14 * baseSigma // support of the base sampler: |k| ≤ baseTail
	aliasBits      = 16
	aliasSize      = 1 << aliasBits
	convStride     = 1023 // t: K = X₁ + t·X₂
	thresholdShift = 92   // thresholds are 124-bit: top 32 bits hot, low 92 bits cold
)

// latticeSigma is σ_K = σ₀·√(1+t²), the standard deviation of the integer noise K.
var latticeSigma = baseSigma * math.Sqrt(1+convStride*convStride)

type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }
func (a u128) add(b u128) u128 {
	lo, c := bits.Add64(a.lo, b.lo, 0)
	hi, _ := bits.Add64(a.hi, b.hi, c)
	return u128{hi, lo}
}
func (a u128) sub(b u128) u128 {
	lo, c := bits.Sub64(a.lo, b.lo, 0)
	hi, _ := bits.Sub64(a.hi, b.hi, c)
	return u128{hi, lo}
}

// aliasTable is the base sampler. Bucket i (value i − baseTail) keeps its own value when the
// 124-bit threshold u < thr[i], else yields alias[i].
type aliasTable struct {
	hot     [aliasSize]aliasEntry // one 8-byte load per draw
	thrCold [aliasSize]u128       // thr mod 2⁹², consulted only on a tie of the hot bits
}

type aliasEntry struct {
	thr   uint32 // thr >> 92
	alias int32  // alias value (already offset: a sample value, not an index)
}

var (
	baseTableOnce sync.Once
	baseTable     *aliasTable
	// baseWeights[i] is the probability of value i − baseTail, in units of 2⁻¹⁴⁰ (exact).
	baseWeights []u128
)

func getBaseTable() *aliasTable {
	baseTableOnce.Do(func() { baseTable, baseWeights = buildAliasTable() })
	return baseTable
}

// expNeg returns e^{−x} for small x ≥ 0 at the precision of x, by its Taylor series.
func expNeg(x *big.Float) *big.Float {
	prec := x.Prec()
	sum := new(big.Float).SetPrec(prec).SetInt64(1)
	term := new(big.Float).SetPrec(prec).SetInt64(1)
	eps := new(big.Float).SetPrec(prec).SetMantExp(big.NewFloat(1), -int(prec)-8)
	for n := int64(1); ; n++ {
		term.Mul(term, x)
		term.Quo(term, new(big.Float).SetPrec(prec).SetInt64(-n))
		sum.Add(sum, term)
		if new(big.Float).Abs(term).Cmp(eps) < 0 {
			return sum
		}
	}
}

// buildAliasTable computes the base distribution exactly enough and runs Vose's alias
// construction in 128-bit integer arithmetic (bucket capacity 2¹²⁴, total 2¹⁴⁰).
func buildAliasTable() (*aliasTable, []u128) {
	const prec = 256
	const n = 2*baseTail + 1
	// ρ(k) = r^{k²}, r = e^{−1/(2σ₀²)}; ρ(k+1) = ρ(k)·r^{2k+1}.
	x := new(big.Float).SetPrec(prec).SetMantExp(big.NewFloat(1), -1)
	x.Quo(x, new(big.Float).SetPrec(prec).SetInt64(baseSigma*baseSigma))
	r := expNeg(x)
	r2 := new(big.Float).SetPrec(prec).Mul(r, r)
	rho := make([]*big.Float, baseTail+1)
	rho[0] = new(big.Float).SetPrec(prec).SetInt64(1)
	step := new(big.Float).SetPrec(prec).Set(r) // r^{2k+1} for k = 0
	z := new(big.Float).SetPrec(prec).SetInt64(1)
	for k := 0; k < baseTail; k++ {
		rho[k+1] = new(big.Float).SetPrec(prec).Mul(rho[k], step)
		step.Mul(step, r2)
		z.Add(z, rho[k+1])
		z.Add(z, rho[k+1])
	}
	// weights w_k = floor(ρ(k)/Z · 2¹⁴⁰), residual to k = 0 so they sum to exactly 2¹⁴⁰.
	scale := new(big.Float).SetPrec(prec).SetMantExp(big.NewFloat(1), 140)
	scale.Quo(scale, z)
	weights := make([]u128, n)
	var sum u128
	tmp := new(big.Float).SetPrec(prec)
	bi := new(big.Int)
	for k := 0; k <= baseTail; k++ {
		tmp.Mul(rho[k], scale)
		tmp.Int(bi) // truncates toward zero
		w := u128{hi: new(big.Int).Rsh(bi, 64).Uint64(), lo: bi.Uint64()}
		weights[baseTail+k] = w
		weights[baseTail-k] = w
		sum = sum.add(w)
		if k > 0 {
			sum = sum.add(w)
		}
	}
	var t aliasTable
	capacity := u128{hi: 1 << 60} // 2¹²⁴
	// The residual: 2¹⁴⁰ − Σw. Σw < 2¹⁴⁰ overflows u128 (2¹²⁸), so compute it modulo 2¹²⁸:
	// both are < 2¹⁴⁰ and the residual is small and non-negative, hence exact mod 2¹²⁸.
	residual := u128{}.sub(sum) // (2¹⁴⁰ − Σw) mod 2¹²⁸ = (0 − Σw) mod 2¹²⁸
	weights[baseTail] = weights[baseTail].add(residual)

	w := make([]u128, aliasSize)
	copy(w, weights)
	small := make([]int, 0, aliasSize)
	large := make([]int, 0, aliasSize)
	for i := range w {
		if w[i].less(capacity) {
			small = append(small, i)
		} else {
			large = append(large, i)
		}
	}
	thr := make([]u128, aliasSize)
	for len(small) > 0 && len(large) > 0 {
		s := small[len(small)-1]
		small = small[:len(small)-1]
		l := large[len(large)-1]
		thr[s] = w[s]
		t.hot[s].alias = int32(l - baseTail)
		w[l] = w[l].sub(capacity.sub(w[s]))
		if w[l].less(capacity) {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	// Whatever is left holds exactly a full bucket (the total is exact): it keeps its value.
	for _, i := range append(small, large...) {
		thr[i] = capacity
		t.hot[i].alias = int32(i - baseTail)
	}
	for i := range thr {
		if !thr[i].less(capacity) { // full bucket: always its own value
			thr[i] = u128{}
			t.hot[i].alias = int32(i - baseTail)
		}
		t.hot[i].thr = uint32(thr[i].hi >> (thresholdShift - 64))
		t.thrCold[i] = u128{hi: thr[i].hi & (1<<(thresholdShift-64) - 1), lo: thr[i].lo}
	}
	return &t, weights
}

// sample draws one base value from a bucket index and the hot 32 threshold bits, consulting
// the source for 92 more bits only on a tie.
func (t *aliasTable) sample(idx uint32, hot uint32, src *Source) int32 {
	e := t.hot[idx]
	v := e.alias
	if hot < e.thr { // a conditional move, not a branch: the outcome is random
		v = int32(idx) - baseTail
	}
	if hot == e.thr {
		return t.sampleTie(idx, src)
	}
	return v
}

// pick is sample without the source: it reports a tie instead of resolving it, so that it
// inlines into the bulk loop.
func (t *aliasTable) pick(idx uint32, hot uint32) (int32, bool) {
	e := t.hot[idx&(aliasSize-1)]
	v := e.alias
	if hot < e.thr {
		v = int32(idx&(aliasSize-1)) - baseTail
	}
	return v, hot == e.thr
}

// sampleTie finishes a draw whose top 32 threshold bits tied with the table's.
func (t *aliasTable) sampleTie(idx uint32, src *Source) int32 {
	cold := u128{hi: src.Uint64() & (1<<(thresholdShift-64) - 1), lo: src.Uint64()}
	if cold.less(t.thrCold[idx]) {
		return int32(idx) - baseTail
	}
	return t.hot[idx].alias
}

// sampleBase draws one value of N_Z(0, σ₀²) (truncated to |k| ≤ 14σ₀).
func sampleBase(t *aliasTable, src *Source) int32 {
	w := src.Uint64()
	return t.sample(uint32(w&(aliasSize-1)), uint32(w>>32), src)
}

// SampleDiscreteGaussian draws one integer from (a distribution within max-log distance 2⁻¹¹¹
// and statistical distance 2⁻¹¹⁸ of) the discrete Gaussian N_Z(0, σ_K²), σ_K = LatticeSigma().
func SampleDiscreteGaussian(src *Source) int64 {
	t := getBaseTable()
	x1 := sampleBase(t, src)
	x2 := sampleBase(t, src)
	return int64(x1) + convStride*int64(x2)
}

// LatticeSigma is the standard deviation σ_K ≈ 2.095·10⁶ of the integer noise that
// SampleDiscreteGaussian draws; real-valued noise of deviation σ is σ/σ_K times it.
func LatticeSigma() float64 { return latticeSigma }

// fillDiscreteGaussian sets out[i] to independent draws of K, 12 random bytes per draw: each
// 64-bit word gives two 16-bit bucket indices and a 32-bit threshold, a third word two more
// thresholds, so three words make two draws.
func fillDiscreteGaussian(out []int64, src *Source) {
	t := getBaseTable()
	buf := src.scratch()
	for off := 0; off+2 <= len(out); {
		n := min(len(out)-off, noiseChunk) &^ 1
		rb := buf[:n/2*24] // n ≤ noiseChunk
		src.fill(rb)
		o := out[off : off+n]
		for i := 0; i+2 <= len(o); i += 2 {
			w := rb[i*12 : i*12+24]
			a := binary.LittleEndian.Uint64(w)
			b := binary.LittleEndian.Uint64(w[8:])
			c := binary.LittleEndian.Uint64(w[16:])
			x1, tie1 := t.pick(uint32(a), uint32(a>>32))
			x2, tie2 := t.pick(uint32(a>>16), uint32(b>>32))
			y1, tie3 := t.pick(uint32(b), uint32(c))
			y2, tie4 := t.pick(uint32(b>>16), uint32(c>>32))
			if tie1 || tie2 || tie3 || tie4 { // probability ≈ 2⁻³⁰
				x1 = t.sample(uint32(a&0xffff), uint32(a>>32), src)
				x2 = t.sample(uint32(a>>16&0xffff), uint32(b>>32), src)
				y1 = t.sample(uint32(b&0xffff), uint32(c), src)
				y2 = t.sample(uint32(b>>16&0xffff), uint32(c>>32), src)
			}
			o[i] = int64(x1) + convStride*int64(x2)
			o[i+1] = int64(y1) + convStride*int64(y2)
		}
		off += n
	}
	if len(out)%2 == 1 {
		out[len(out)-1] = SampleDiscreteGaussian(src)
	}
}
