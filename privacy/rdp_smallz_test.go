package privacy

import (
	"math"
	"testing"
)

// refLogAFrac is an independent computation of log A_α for fractional α: the series of
// Mironov, Talwar and Zhang (2019, §3.3) as Google's dp_accounting evaluates it
// (rdp_privacy_accountant._compute_log_a_frac): A_α splits at z0 = σ²·log(1/q − 1) + 1/2 into
// two binomial series whose terms are Gaussian tails, summed in log space. It shares no code
// with logAFractional (a quadrature).
func refLogAFrac(q, sigma, alpha float64) float64 {
	logA0, logA1 := math.Inf(-1), math.Inf(-1)
	z0 := sigma*sigma*math.Log(1/q-1) + 0.5
	lq, l1q := math.Log(q), math.Log1p(-q)
	lgA, _ := math.Lgamma(alpha + 1)
	for i := 0.0; i < 10000; i++ {
		lgI, _ := math.Lgamma(i + 1)
		lgJ, sJ := math.Lgamma(alpha - i + 1)
		logCoef := lgA - lgI - lgJ // log |C(α, i)|; its sign is that of Γ(α − i + 1)
		j := alpha - i
		logT0 := logCoef + i*lq + j*l1q
		logT1 := logCoef + j*lq + i*l1q
		logE0 := math.Log(0.5) + refLogErfc((i-z0)/(math.Sqrt2*sigma))
		logE1 := math.Log(0.5) + refLogErfc((z0-j)/(math.Sqrt2*sigma))
		logS0 := logT0 + (i*i-i)/(2*sigma*sigma) + logE0
		logS1 := logT1 + (j*j-j)/(2*sigma*sigma) + logE1
		if sJ > 0 {
			logA0, logA1 = refLogAdd(logA0, logS0), refLogAdd(logA1, logS1)
		} else {
			logA0, logA1 = refLogSub(logA0, logS0), refLogSub(logA1, logS1)
		}
		if math.Max(logS0, logS1) < -40 && i > alpha {
			break
		}
	}
	return refLogAdd(logA0, logA1)
}

func refLogAdd(a, b float64) float64 {
	if a < b {
		a, b = b, a
	}
	if math.IsInf(b, -1) {
		return a
	}
	return a + math.Log1p(math.Exp(b-a))
}

func refLogSub(a, b float64) float64 {
	if math.IsInf(b, -1) {
		return a
	}
	return a + math.Log1p(-math.Exp(b-a)) // NaN if b > a: the test then fails
}

// refLogErfc is log erfc(x): directly while erfc(x) is a normal float64, by the asymptotic
// series erfc(x) = e^{−x²}/(x√π)·(1 − 1/(2x²) + 3/(2x²)² − 15/(2x²)³ + …) beyond (x ≥ 25: the
// first omitted term is below 10⁻¹⁸).
func refLogErfc(x float64) float64 {
	if x < 25 {
		return math.Log(math.Erfc(x))
	}
	t := 1 / (2 * x * x)
	s, term := 1.0, 1.0
	for k := 1; k <= 6; k++ {
		term *= -float64(2*k-1) * t
		s += term
	}
	return -x*x - math.Log(x*math.Sqrt(math.Pi)) + math.Log(s)
}

// With a small noise multiplier (z = 0.05, 0.1) the quadrature's e^u overflowed and the
// fractional-order RDP was NaN; it must now match the reference series (and the exact binomial
// sum at integer orders) to 10⁻⁹ relative.
func TestSampledGaussianRDPSmallNoise(t *testing.T) {
	for _, q := range []float64{0.25, 0.01} {
		for _, z := range []float64{0.05, 0.1, 0.2, 0.5} {
			for _, a := range []float64{1.001, 1.01, 1.223, 1.5, 2.5, 7.3, 10.9} {
				got, want := logAFractional(q, z, a), refLogAFrac(q, z, a)
				if !(math.Abs(got-want) <= 1e-9*math.Abs(want)+1e-13) {
					t.Errorf("q = %v, z = %v, α = %v: log A = %.15g, reference series %.15g", q, z, a, got, want)
				}
			}
			for _, a := range []int{2, 3, 7, 11} {
				got, want := logAFractional(q, z, float64(a)), logAInteger(q, z, a)
				if !(math.Abs(got-want) <= 1e-9*math.Abs(want)+1e-13) {
					t.Errorf("q = %v, z = %v, α = %d: quadrature log A = %.15g, binomial sum %.15g", q, z, a, got, want)
				}
			}
		}
	}
	// The reference values of the issue: finite at every order, ε decreasing in z.
	prev := math.Inf(1)
	for _, z := range []float64{0.05, 0.1, 0.2} {
		a := NewRDPAccountant(ConversionImproved)
		if err := a.Compose(0.25, z, 1); err != nil {
			t.Fatal(err)
		}
		s, err := a.Spent(1e-5)
		if err != nil || !(s.Epsilon > 0) || !(s.Epsilon < prev) || math.IsInf(s.Epsilon, 0) {
			t.Fatalf("q = 0.25, z = %v, 1 step: ε = %v at order %v, %v (previous %v)", z, s.Epsilon, s.Order, err, prev)
		}
		prev = s.Epsilon
		r, err := SampledGaussianRDP(0.25, z, RDPOrders())
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range r {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				t.Fatalf("z = %v: RDP at order %v is %v", z, RDPOrders()[i], v)
			}
		}
	}
}
