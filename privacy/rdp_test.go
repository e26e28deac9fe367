package privacy

import (
	"fmt"
	"math"
	"testing"
)

// refLogA is the test's independent reference for log A_α: the defining integral
// E_{x~N(0,z²)}[((1−q) + q e^{(2x−1)/(2z²)})^α] itself (not the A−1 form the package uses),
// by trapezoidal quadrature with a finer step and a wider range than the package's,
// the integrand kept in log space.
func refLogA(q, z, alpha float64) float64 {
	h := math.Min(z/12, math.Pi*z*z/50)
	lo, hi := -40*z, alpha+40*z
	n := int(math.Ceil((hi - lo) / h))
	h = (hi - lo) / float64(n)
	l1q, lq := math.Log1p(-q), math.Log(q)
	maxT, s := math.Inf(-1), 0.0
	for i := 0; i <= n; i++ {
		x := lo + float64(i)*h
		u := (2*x - 1) / (2 * z * z)
		b := lq + u
		if l1q > b {
			b = l1q + math.Log1p(math.Exp(b-l1q))
		} else if !math.IsInf(l1q, -1) {
			b += math.Log1p(math.Exp(l1q - b))
		}
		t := -x*x/(2*z*z) + alpha*b
		if t > maxT {
			s = s*math.Exp(maxT-t) + 1
			maxT = t
		} else {
			s += math.Exp(t - maxT)
		}
	}
	return maxT + math.Log(s) + math.Log(h) - math.Log(z*math.Sqrt(2*math.Pi))
}

// refEpsilon is the true RDP bound: the minimum over all real orders α > 1 (not a grid) of the
// conversion of T·ρ(α), found by a coarse scan of the reference curve and golden-section search.
func refEpsilon(q, z float64, steps int, delta float64, conv EpsilonConversion, cache map[float64]float64) (eps, order float64) {
	f := func(a float64) float64 {
		r, ok := cache[a]
		if !ok {
			r = refLogA(q, z, a) / (a - 1)
			cache[a] = r
		}
		e, _, _ := RDPToEpsilon([]float64{a}, []float64{float64(steps) * math.Max(r, 0)}, delta, conv)
		return e
	}
	composed := func(a float64) float64 { f(a); return float64(steps) * cache[a] }
	// Scan α − 1 geometrically, then refine around the best point.
	best, bestB := math.Inf(1), 0.0
	const ratio = 1.25
	for b := 1e-4; b < 5000; b *= ratio {
		if e := f(1 + b); e < best {
			best, bestB = e, b
		}
		// For α′ ≥ α ≥ 2, ε(α′) ≥ T·ρ(α′) − (1 + log α′)/(α′ − 1) ≥ T·ρ(α) − (1 + log α)/(α − 1)
		// (ρ is nondecreasing; both conversions subtract at most that): once this reaches
		// best, no larger order can do better.
		if a := 1 + b; a >= 2 && composed(a)-(1+math.Log(a))/(a-1) >= best {
			break
		}
	}
	lo, hi := math.Log(bestB/ratio), math.Log(bestB*ratio)
	g := (math.Sqrt(5) - 1) / 2
	x1, x2 := hi-g*(hi-lo), lo+g*(hi-lo)
	f1, f2 := f(1+math.Exp(x1)), f(1+math.Exp(x2))
	for hi-lo > 1e-6 {
		if f1 < f2 {
			hi, x2, f2 = x2, x1, f1
			x1 = hi - g*(hi-lo)
			f1 = f(1 + math.Exp(x1))
		} else {
			lo, x1, f1 = x1, x2, f2
			x2 = lo + g*(hi-lo)
			f2 = f(1 + math.Exp(x2))
		}
	}
	return math.Min(best, math.Min(f1, f2)), 1 + bestB
}

func accountantEpsilon(t *testing.T, q, z float64, steps int, delta float64, conv EpsilonConversion) (float64, float64) {
	t.Helper()
	a := NewRDPAccountant(conv)
	if err := a.Compose(q, z, steps); err != nil {
		t.Fatal(err)
	}
	s, err := a.Spent(delta)
	if err != nil {
		t.Fatal(err)
	}
	return s.Epsilon, s.Order
}

// sharedAccountants keeps one accountant per conversion so that per-(q, z) curves are computed
// once across the reference grid.
var sharedAccountants = map[EpsilonConversion]*RDPAccountant{}

func sharedEpsilon(t *testing.T, q, z float64, steps int, delta float64, conv EpsilonConversion) (float64, float64) {
	t.Helper()
	a, ok := sharedAccountants[conv]
	if !ok {
		a = NewRDPAccountant(conv)
		sharedAccountants[conv] = a
	}
	s, err := a.spent([]Event{{SamplingRate: q, NoiseMultiplier: z, Steps: steps}}, delta)
	if err != nil {
		t.Fatal(err)
	}
	return s.Epsilon, s.Order
}

func TestRDPPublicReferencePoints(t *testing.T) {
	for _, tc := range []struct{ z, classic, improved float64 }{{1.1, 3.01, 2.60}, {1.12, 2.92, 2.52}} {
		c, _ := accountantEpsilon(t, 256.0/60000, tc.z, 14063, 1e-5, ConversionClassic)
		i, _ := accountantEpsilon(t, 256.0/60000, tc.z, 14063, 1e-5, ConversionImproved)
		if math.Abs(c-tc.classic) > 0.01 || math.Abs(i-tc.improved) > 0.01 {
			t.Errorf("z = %v: ε = %.4f classic, %.4f improved; want ≈ %.2f, %.2f", tc.z, c, i, tc.classic, tc.improved)
		}
	}
}

// TestRDPAgainstReference checks the accountant over q ∈ [0.001, 1], z ∈ [0.5, 5], steps ∈ [1,
// 10⁴], δ ∈ [10⁻⁶, 10⁻³], hard corners included: never below the true RDP bound (the reference
// optimum over real orders), and within 1% above it.
func TestRDPAgainstReference(t *testing.T) {
	qs := []float64{0.001, 0.01, 0.1, 0.5, 1}
	zs := []float64{0.5, 1, 2, 5}
	stepsList := []int{1, 100, 10000}
	deltas := []float64{1e-6, 1e-3}
	if testing.Short() {
		qs, zs = []float64{0.001, 0.5, 1}, []float64{0.5, 5}
	}
	for _, q := range qs {
		for _, z := range zs {
			cache := map[float64]float64{}
			for _, steps := range stepsList {
				for _, delta := range deltas {
					for _, conv := range []EpsilonConversion{ConversionImproved, ConversionClassic} {
						if conv == ConversionClassic && delta != 1e-6 {
							continue
						}
						name := fmt.Sprintf("q=%v z=%v T=%d δ=%v %v", q, z, steps, delta, conv)
						got, order := sharedEpsilon(t, q, z, steps, delta, conv)
						want, refOrder := refEpsilon(q, z, steps, delta, conv, cache)
						if refOrder >= 4000 {
							t.Errorf("%s: reference optimum at α ≈ %v is at the edge of its search", name, refOrder)
						}
						if got < want*(1-1e-8)-1e-12 { // the reference is good to ~1e-9
							t.Errorf("%s: ε = %.10g (α=%.4g) is BELOW the true RDP bound %.10g (α≈%.4g)", name, got, order, want, refOrder)
						}
						if got > want*1.01+1e-6 {
							t.Errorf("%s: ε = %.6g (α=%.4g) is more than 1%% above the RDP bound %.6g (α≈%.4g)", name, got, order, want, refOrder)
						}
					}
				}
			}
		}
	}
}

// The package's two ways of computing A_α (binomial sum and quadrature) agree at integer orders.
func TestRDPIntegerAndFractionalAgree(t *testing.T) {
	for _, q := range []float64{0.001, 0.02, 0.3, 0.9} {
		for _, z := range []float64{0.5, 1, 3} {
			for _, a := range []int{2, 3, 7, 20} {
				bi, qu := logAInteger(q, z, a), logAFractional(q, z, float64(a))
				if math.Abs(bi-qu) > 1e-9*math.Abs(bi)+1e-15 {
					t.Errorf("q=%v z=%v α=%d: binomial log A = %.15g, quadrature %.15g", q, z, a, bi, qu)
				}
			}
		}
	}
}

func TestRDPBadInput(t *testing.T) {
	for _, tc := range []struct{ q, z float64 }{{0, 1}, {-0.1, 1}, {1.5, 1}, {math.NaN(), 1}, {0.1, 0}, {0.1, -1}, {0.1, math.Inf(1)}, {0.1, math.NaN()}} {
		if _, err := SampledGaussianRDP(tc.q, tc.z, rdpOrders); err == nil {
			t.Errorf("SampledGaussianRDP(q=%v, z=%v): no error", tc.q, tc.z)
		}
	}
	if _, err := SampledGaussianRDP(0.1, 1, []float64{1}); err == nil {
		t.Error("order 1 accepted")
	}
	for _, d := range []float64{0, 1, -1e-5, math.NaN(), 2} {
		if _, _, err := RDPToEpsilon([]float64{2}, []float64{1}, d, ConversionImproved); err == nil {
			t.Errorf("δ = %v accepted", d)
		}
	}
}
