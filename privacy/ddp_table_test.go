package privacy

import (
	"math"
	"testing"
)

// chi2Check draws n values and compares them with pmf over [lo, hi] (bins with ≥ 20 expected).
func chi2Check(t *testing.T, name string, n int, draw func() int64, pmf func(int64) float64, lo, hi int64) {
	t.Helper()
	counts := map[int64]float64{}
	for range n {
		counts[draw()]++
	}
	var chi2 float64
	bins := 0
	for k := lo; k <= hi; k++ {
		e := float64(n) * pmf(k)
		if e < 20 {
			continue
		}
		d := counts[k] - e
		chi2 += d * d / e
		bins++
	}
	if bins < 1 || chi2 > float64(bins)+6*math.Sqrt(2*float64(bins)) {
		t.Errorf("%s: χ² = %.1f over %d bins", name, chi2, bins)
	}
}

// The table samplers (the bulk and each tail on its own) against the exact pmfs.
func TestTableSamplersPMF(t *testing.T) {
	src := NewSeededSource(21)
	for _, mu := range []float64{20, 700} {
		tb := newPoissonTable(mu)
		if tb == nil || tb.maxRelErr > 0x1p-40 {
			t.Fatalf("Poisson(%v): table %v", mu, tb)
		}
		pmf := func(k int64) float64 {
			lg, _ := math.Lgamma(float64(k) + 1)
			return math.Exp(-mu + float64(k)*math.Log(mu) - lg)
		}
		chi2Check(t, "Poisson table", 300000, func() int64 { return tb.sample(src) }, pmf, 0, int64(mu*3+50))
		lo, hi := tb.lo, tb.lo+int64(len(tb.cum))-2
		var up float64
		for k := hi + 1; k < hi+2000; k++ {
			up += pmf(k)
		}
		chi2Check(t, "Poisson upper tail", 100000, func() int64 { return tb.upper(src) }, func(k int64) float64 {
			if k <= hi {
				return 0
			}
			return pmf(k) / up
		}, hi+1, hi+2000)
		if lo > 0 {
			var low float64
			for k := int64(0); k < lo; k++ {
				low += pmf(k)
			}
			chi2Check(t, "Poisson lower tail", 100000, func() int64 { return tb.lower(src) }, func(k int64) float64 {
				if k >= lo {
					return 0
				}
				return pmf(k) / low
			}, 0, lo-1)
		}
	}
	for _, s2 := range []float64{0.3, 9, 2500} {
		tb := newDGaussTable(s2)
		if tb == nil || tb.maxRelErr > 0x1p-40 {
			t.Fatalf("N_Z(0, %v): table %v", s2, tb)
		}
		var norm float64
		for k := -20000; k <= 20000; k++ {
			norm += math.Exp(-float64(k*k) / (2 * s2))
		}
		pmf := func(k int64) float64 { return math.Exp(-float64(k*k)/(2*s2)) / norm }
		w := int64(6*math.Sqrt(s2)) + 5
		chi2Check(t, "discrete Gaussian table", 300000, func() int64 { return tb.sample(src) }, pmf, -w, w)
		edge := -tb.lo
		var up float64
		for k := edge + 1; k < edge+20000; k++ {
			up += pmf(k)
		}
		chi2Check(t, "discrete Gaussian upper tail", 100000, func() int64 { return tb.upper(src) }, func(k int64) float64 {
			if k <= edge {
				return 0
			}
			return pmf(k) / up
		}, edge+1, edge+20000)
		chi2Check(t, "discrete Gaussian lower tail", 100000, func() int64 { return tb.lower(src) }, func(k int64) float64 {
			if k >= -edge {
				return 0
			}
			return pmf(k) / up
		}, -edge-20000, -edge-1)
	}
	// Too wide for a table (more than 2¹⁸ values above 2⁻²⁰... none: the mode itself is below
	// 2⁻²⁰): the rejection samplers stay in charge.
	if newDGaussTable(1e13) != nil {
		t.Error("N_Z(0, 10¹³) got a table although no value has probability 2⁻²⁰")
	}
}
