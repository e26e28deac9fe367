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

// The Skellam table: its Bessel pmf against the convolution of two Poisson pmfs (an independent
// computation), its direct tail formula against both, and draws (table, bulk, each tail) by χ².
func TestSkellamTablePMF(t *testing.T) {
	src := NewSeededSource(22)
	for _, mu := range []float64{0.15, 2.5, 20, 700, 20000} {
		bessel := skellamBesselPMF(mu)
		w := int(8*math.Sqrt(2*mu)) + 8
		conv := skellamPMF(2*mu, w)
		for k := 0; k <= w && k < len(bessel); k++ {
			want := conv[k+w]
			if want < 1e-250 {
				continue
			}
			if math.Abs(bessel[k]-want) > 1e-9*want {
				t.Fatalf("Skellam(%v): P(%d) = %v by Bessel recurrence, %v by convolution", mu, k, bessel[k], want)
			}
			if k%7 == 0 {
				if d := skellamPMFDirect(mu, int64(-k)); math.Abs(d-want) > 1e-9*want {
					t.Fatalf("Skellam(%v): direct P(−%d) = %v, convolution %v", mu, k, d, want)
				}
			}
		}
		if mu < 1 {
			continue
		}
		tb := newSkellamTable(mu)
		if tb == nil || tb.maxRelErr > 0x1p-40 {
			t.Fatalf("Skellam(%v): table %v", mu, tb)
		}
		pmf := func(k int64) float64 {
			if k < 0 {
				k = -k
			}
			if int(k) < len(bessel) {
				return bessel[k]
			}
			return 0
		}
		r := int64(6*math.Sqrt(2*mu)) + 5
		chi2Check(t, "Skellam table", 300000, func() int64 { return tb.sample(src) }, pmf, -r, r)
		var buf []int64
		chi2Check(t, "Skellam table, bulk", 300000, func() int64 {
			if len(buf) == 0 {
				buf = make([]int64, 3000)
				tb.addTo(buf, src, false)
			}
			v := buf[0]
			buf = buf[1:]
			return v
		}, pmf, -r, r)
		edge := -tb.lo
		var up float64
		for k := edge + 1; int(k) < len(bessel); k++ {
			up += pmf(k)
		}
		chi2Check(t, "Skellam upper tail", 100000, func() int64 { return tb.upper(src) }, func(k int64) float64 {
			if k <= edge {
				return 0
			}
			return pmf(k) / up
		}, edge+1, edge+r)
		chi2Check(t, "Skellam lower tail", 100000, func() int64 { return tb.lower(src) }, func(k int64) float64 {
			if k >= -edge {
				return 0
			}
			return pmf(k) / up
		}, -edge-r, -edge-1)
	}
	// The encoder uses it for the README's 2NN shares.
	p, err := DDPConfig{Mechanism: MechanismSkellam, Bits: 16, Clip: 0.3, NoiseMultiplier: 2, MinClients: 843, Cohort: 1000}.Params(199210)
	if err != nil || newSkellamTable(p.ShareParam/2) == nil {
		t.Fatalf("no Skellam table for share parameter %v (%v)", p.ShareParam, err)
	}
}
