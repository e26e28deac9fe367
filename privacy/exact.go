package privacy

import (
	"fmt"
	"math/big"
	"math/bits"
)

// The exact discrete Gaussian sampler of Canonne, Kamath, Steinke 2020 ("The Discrete Gaussian
// for Differential Privacy", Algorithms 1–3): rejection sampling from a discrete Laplace, every
// decision a Bernoulli trial with a rational probability decided from uniform random integers,
// so no floating-point number is ever involved and the output distribution is exactly
// N_Z(0, σ²). It costs microseconds per draw (big-integer arithmetic, a few dozen random words),
// which is why the noise mechanisms use the table-based sampler of SampleDiscreteGaussian; this
// one is its independent check and the measured reason for that choice.

// uniformBelow returns a uniform integer in [0, n) for n > 0, by rejection.
func uniformBelow(n uint64, src *Source) uint64 {
	if n&(n-1) == 0 {
		return src.Uint64() & (n - 1)
	}
	// Lemire's method: multiply and reject the biased low part.
	hi, lo := bits.Mul64(src.Uint64(), n)
	if lo < n {
		thresh := -n % n
		for lo < thresh {
			hi, lo = bits.Mul64(src.Uint64(), n)
		}
	}
	return hi
}

// uniformBelowBig returns a uniform integer in [0, n) for n > 0.
func uniformBelowBig(n *big.Int, src *Source) *big.Int {
	if n.IsUint64() {
		return new(big.Int).SetUint64(uniformBelow(n.Uint64(), src))
	}
	nbits := n.BitLen()
	words := (nbits + 63) / 64
	buf := make([]big.Word, words)
	for {
		for i := range buf {
			buf[i] = big.Word(src.Uint64())
		}
		if extra := words*64 - nbits; extra > 0 {
			buf[words-1] &= big.Word(^uint64(0) >> extra)
		}
		r := new(big.Int).SetBits(buf)
		if r.Cmp(n) < 0 {
			return r
		}
	}
}

// bernoulliRat returns true with probability num/den (0 ≤ num ≤ den, den > 0).
func bernoulliRat(num, den *big.Int, src *Source) bool {
	return uniformBelowBig(den, src).Cmp(num) < 0
}

// bernoulliExpNeg returns true with probability e^{−num/den} for num, den ≥ 0, den > 0.
func bernoulliExpNeg(num, den *big.Int, src *Source) bool {
	// Reduce to γ ≤ 1: e^{−γ} = (e^{−1})^{⌊γ⌋} · e^{−(γ − ⌊γ⌋)}.
	q, r := new(big.Int).QuoRem(num, den, new(big.Int))
	one := big.NewInt(1)
	for i := new(big.Int); i.Cmp(q) < 0; i.Add(i, one) {
		if !bernoulliExpNegSmall(one, one, src) {
			return false
		}
	}
	return bernoulliExpNegSmall(r, den, src)
}

// bernoulliExpNegSmall is bernoulliExpNeg for γ = num/den ∈ [0, 1]: K is the first index with
// a failed Bernoulli(γ/K); P[K odd] = e^{−γ}.
func bernoulliExpNegSmall(num, den *big.Int, src *Source) bool {
	k := int64(1)
	d := new(big.Int)
	for {
		d.Mul(den, big.NewInt(k))
		if !bernoulliRat(num, d, src) {
			return k%2 == 1
		}
		k++
	}
}

// sampleDiscreteLaplace draws from P[Y = y] ∝ e^{−|y|/t}, t ≥ 1 an integer.
func sampleDiscreteLaplace(t uint64, src *Source) int64 {
	tBig := new(big.Int).SetUint64(t)
	one := big.NewInt(1)
	for {
		u := uniformBelow(t, src)
		if !bernoulliExpNeg(new(big.Int).SetUint64(u), tBig, src) {
			continue
		}
		v := uint64(0)
		for bernoulliExpNeg(one, one, src) {
			v++
		}
		negative := src.Uint64()&1 == 1
		if negative && u == 0 && v == 0 {
			continue
		}
		y := int64(u + t*v)
		if negative {
			y = -y
		}
		return y
	}
}

// SampleDiscreteGaussianExact draws one value from exactly N_Z(0, σ²) for σ² = sigma2 (a
// positive integer: the lattice noise variances used here are integers).
func SampleDiscreteGaussianExact(sigma2 uint64, src *Source) (int64, error) {
	if sigma2 == 0 || sigma2 > 1<<62 {
		return 0, fmt.Errorf("privacy: exact discrete Gaussian: σ² must be in [1, 2⁶²], got %d", sigma2)
	}
	// t = ⌊σ⌋ + 1.
	s := new(big.Int).Sqrt(new(big.Int).SetUint64(sigma2))
	t := s.Uint64() + 1
	// Accept Y with probability exp(−(|Y| − σ²/t)²/(2σ²)) = exp(−(|Y|t − σ²)²/(2σ²t²)).
	s2 := new(big.Int).SetUint64(sigma2)
	tb := new(big.Int).SetUint64(t)
	den := new(big.Int).Mul(tb, tb)
	den.Mul(den, s2)
	den.Lsh(den, 1)
	num := new(big.Int)
	for {
		y := sampleDiscreteLaplace(t, src)
		a := y
		if a < 0 {
			a = -a
		}
		num.SetInt64(a)
		num.Mul(num, tb)
		num.Sub(num, s2)
		num.Mul(num, num)
		if bernoulliExpNeg(num, den, src) {
			return y, nil
		}
	}
}
