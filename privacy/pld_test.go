package privacy

import (
	"encoding/json"
	"math"
	"testing"
)

func upperTail(x float64) float64 { return 0.5 * math.Erfc(x/math.Sqrt2) }

// logUpperTail is log P[N(0,1) > x], by the asymptotic series where Erfc underflows.
func logUpperTail(x float64) float64 {
	if x < 30 {
		return math.Log(upperTail(x))
	}
	x2 := x * x
	return -x2/2 - math.Log(x*math.Sqrt(2*math.Pi)) + math.Log1p(-1/x2+3/(x2*x2)-15/(x2*x2*x2))
}

// solveEpsilon finds the smallest ε ≥ 0 with deltaAt(ε) ≤ delta by bisection (deltaAt decreasing).
func solveEpsilon(deltaAt func(float64) float64, delta float64) float64 {
	if deltaAt(0) <= delta {
		return 0
	}
	lo, hi := 0.0, 1.0
	for deltaAt(hi) > delta {
		lo, hi = hi, 2*hi
	}
	for hi-lo > 1e-13*hi {
		mid := (lo + hi) / 2
		if deltaAt(mid) > delta {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

// exactGaussianEpsilon is the tight ε of T compositions of the Gaussian mechanism with noise
// multiplier z (Balle & Wang 2018): μ = √T/z, δ(ε) = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2).
func exactGaussianEpsilon(z float64, steps int, delta float64) float64 {
	mu := math.Sqrt(float64(steps)) / z
	return solveEpsilon(func(e float64) float64 {
		return math.Exp(logUpperTail(e/mu-mu/2)) - math.Exp(e+logUpperTail(e/mu+mu/2))
	}, delta)
}

// exactSampledGaussianEpsilonOneStep is the tight ε of one step of the Poisson-subsampled
// Gaussian mechanism: the larger over the remove pair (M, N₀) and the add pair (N₀, M).
func exactSampledGaussianEpsilonOneStep(q, z, delta float64) float64 {
	s2 := z * z
	remove := func(e float64) float64 { // H_{e^ε}(M‖N₀) over the set {x > x_ε}
		d := math.Exp(e) - (1 - q)
		if d <= 0 {
			return 1 - math.Exp(e)
		}
		x := s2*math.Log(d/q) + 0.5
		return (1-q)*upperTail(x/z) + q*upperTail((x-1)/z) - math.Exp(e)*upperTail(x/z)
	}
	add := func(e float64) float64 { // H_{e^ε}(N₀‖M) over the set {x < x'_ε}
		d := math.Exp(-e) - (1 - q)
		if d <= 0 {
			return 0
		}
		x := s2*math.Log(d/q) + 0.5
		return upperTail(-x/z) - math.Exp(e)*((1-q)*upperTail(-x/z)+q*upperTail((1-x)/z))
	}
	return math.Max(solveEpsilon(remove, delta), solveEpsilon(add, delta))
}

func pldEpsilon(t *testing.T, disc, q, z float64, steps int, delta float64) float64 {
	t.Helper()
	a, err := NewPLDAccountant(disc)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Compose(q, z, steps); err != nil {
		t.Fatal(err)
	}
	e, err := a.Epsilon(delta)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestPLDMatchesExactGaussianComposition(t *testing.T) {
	for _, tc := range []struct {
		z     float64
		steps int
		delta float64
	}{{1, 1, 1e-5}, {2, 1, 1e-6}, {0.8, 10, 1e-5}, {1, 100, 1e-5}, {5, 1000, 1e-3}, {2, 10000, 1e-6}} {
		want := exactGaussianEpsilon(tc.z, tc.steps, tc.delta)
		got := pldEpsilon(t, DefaultPLDDiscretization, 1, tc.z, tc.steps, tc.delta)
		if got < want*(1-1e-9) {
			t.Errorf("q=1 z=%v T=%d δ=%v: PLD ε = %.10g BELOW the exact %.10g", tc.z, tc.steps, tc.delta, got, want)
		}
		if got > want*1.005+1e-4 {
			t.Errorf("q=1 z=%v T=%d δ=%v: PLD ε = %.6g, exact %.6g: too loose", tc.z, tc.steps, tc.delta, got, want)
		}
	}
}

func TestPLDMatchesExactSampledGaussianOneStep(t *testing.T) {
	for _, tc := range []struct{ q, z, delta float64 }{{0.01, 1, 1e-5}, {0.1, 0.7, 1e-6}, {0.5, 2, 1e-3}, {0.001, 0.5, 1e-6}, {0.9, 1, 1e-5}} {
		want := exactSampledGaussianEpsilonOneStep(tc.q, tc.z, tc.delta)
		got := pldEpsilon(t, DefaultPLDDiscretization, tc.q, tc.z, 1, tc.delta)
		if got < want*(1-1e-9) {
			t.Errorf("q=%v z=%v δ=%v: PLD ε = %.10g BELOW the exact %.10g", tc.q, tc.z, tc.delta, got, want)
		}
		if got > want*1.005+1e-4 {
			t.Errorf("q=%v z=%v δ=%v: PLD ε = %.6g, exact %.6g: too loose", tc.q, tc.z, tc.delta, got, want)
		}
	}
}

// Over many steps there is no closed form: the PLD must stay below RDP (it is tighter), and
// refining the grid must barely move it (the discretisation has converged).
func TestPLDTighterThanRDPAndConverged(t *testing.T) {
	for _, tc := range []struct {
		q, z   float64
		steps  int
		margin float64 // PLD must be below RDP by at least this factor
	}{{0.01, 1, 10, 0.5}, {0.05, 0.9, 100, 0.9}, {256.0 / 60000, 1.1, 14063, 0.95}} {
		rdp := NewRDPAccountant(ConversionImproved)
		if err := rdp.Compose(tc.q, tc.z, tc.steps); err != nil {
			t.Fatal(err)
		}
		er, err := rdp.Epsilon(1e-5)
		if err != nil {
			t.Fatal(err)
		}
		coarse := pldEpsilon(t, DefaultPLDDiscretization, tc.q, tc.z, tc.steps, 1e-5)
		fine := coarse
		if tc.steps <= 100 {
			fine = pldEpsilon(t, DefaultPLDDiscretization/2, tc.q, tc.z, tc.steps, 1e-5)
		}
		t.Logf("q=%v z=%v T=%d: RDP ε = %.4f, PLD ε = %.4f (Δ=1e-4), %.4f (Δ=5e-5)", tc.q, tc.z, tc.steps, er, coarse, fine)
		if coarse > tc.margin*er {
			t.Errorf("PLD ε %.4f not below %.2f × RDP ε %.4f", coarse, tc.margin, er)
		}
		if math.Abs(coarse-fine) > 0.005*fine {
			t.Errorf("PLD not converged: %.5f at Δ=1e-4 vs %.5f at Δ=5e-5", coarse, fine)
		}
	}
}

func TestAccountantStateRoundTrip(t *testing.T) {
	for _, kind := range []string{"rdp", "pld"} {
		a, err := NewAccountant(kind)
		if err != nil {
			t.Fatal(err)
		}
		whole, _ := NewAccountant(kind)
		for r := range 30 {
			q, z := 0.01, 1.0
			if r >= 20 {
				z = 1.3 // a change of noise mid-run
			}
			if err := a.Compose(q, z, 1); err != nil {
				t.Fatal(err)
			}
			if err := whole.Compose(q, z, 1); err != nil {
				t.Fatal(err)
			}
			if r == 14 { // save and resume mid-run
				data, err := json.Marshal(a)
				if err != nil {
					t.Fatal(err)
				}
				if a, err = RestoreAccountant(data); err != nil {
					t.Fatalf("%s: restore %s: %v", kind, data, err)
				}
			}
		}
		if a.Steps() != 30 || a.Kind() != kind {
			t.Fatalf("%s: restored accountant has %d steps, kind %q", kind, a.Steps(), a.Kind())
		}
		e1, err1 := a.Epsilon(1e-5)
		e2, err2 := whole.Epsilon(1e-5)
		if err1 != nil || err2 != nil || e1 != e2 {
			t.Errorf("%s: resumed ε = %v (%v), uninterrupted ε = %v (%v)", kind, e1, err1, e2, err2)
		}
		// EpsilonAfter previews without recording.
		next, err := a.EpsilonAfter(0.01, 1.3, 1, 1e-5)
		if err != nil || !(next > e1) || a.Steps() != 30 {
			t.Errorf("%s: EpsilonAfter = %v (%v), ε now %v, steps %d", kind, next, err, e1, a.Steps())
		}
	}
	for _, bad := range []string{`{"accountant":"zcdp","events":[]}`, `{"accountant":"rdp","events":[{"sampling_rate":2,"noise_multiplier":1,"steps":1}]}`, `{"accountant":"rdp","conversion":"magic"}`, `nope`} {
		if _, err := RestoreAccountant([]byte(bad)); err == nil {
			t.Errorf("RestoreAccountant(%s): no error", bad)
		}
	}
}

func TestAccountantBadInput(t *testing.T) {
	for _, kind := range []string{"rdp", "pld"} {
		a, _ := NewAccountant(kind)
		for _, tc := range []struct {
			q, z  float64
			steps int
		}{{0, 1, 1}, {1.01, 1, 1}, {0.1, 0, 1}, {0.1, -2, 1}, {math.NaN(), 1, 1}, {0.1, math.Inf(1), 1}, {0.1, 1, -1}} {
			if err := a.Compose(tc.q, tc.z, tc.steps); err == nil {
				t.Errorf("%s: Compose(%v, %v, %d): no error", kind, tc.q, tc.z, tc.steps)
			}
		}
		a.Compose(0.1, 1, 10)
		for _, d := range []float64{0, 1, -1, math.NaN()} {
			if _, err := a.Epsilon(d); err == nil {
				t.Errorf("%s: Epsilon(δ=%v): no error", kind, d)
			}
		}
	}
	if _, err := NewAccountant("zcdp"); err == nil {
		t.Error("unknown accountant kind accepted")
	}
}

// Heterogeneous composition: Gaussian mechanisms with different noise compose to a Gaussian
// with 1/z² = Σ T_i/z_i², checked for both accountants' PLD and against RDP's closed form.
func TestPLDHeterogeneousComposition(t *testing.T) {
	a, err := NewPLDAccountant(DefaultPLDDiscretization)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []Event{{SamplingRate: 1, NoiseMultiplier: 2, Steps: 10}, {SamplingRate: 1, NoiseMultiplier: 3, Steps: 20}, {SamplingRate: 1, NoiseMultiplier: 1.5, Steps: 5}} {
		if err := a.Compose(e.SamplingRate, e.NoiseMultiplier, e.Steps); err != nil {
			t.Fatal(err)
		}
	}
	invZ2 := 10/4.0 + 20/9.0 + 5/2.25
	want := exactGaussianEpsilon(1/math.Sqrt(invZ2), 1, 1e-5)
	got, err := a.Epsilon(1e-5)
	if err != nil {
		t.Fatal(err)
	}
	if got < want*(1-1e-9) || got > want*1.005 {
		t.Errorf("heterogeneous PLD ε = %.6g, exact %.6g", got, want)
	}
}

// optimisticStep discretises one step by rounding every loss down to the grid: pointwise lower
// losses, so the composed δ(ε) — and ε — is a lower bound on the truth (up to the 10⁻¹⁸ tails).
func optimisticStep(s gaussianPLDStep, delta float64) lossPMF {
	lo, hi := s.lossRange()
	iLo, iHi := int(math.Floor(lo/delta)), int(math.Ceil(hi/delta))
	out := lossPMF{offset: iLo, p: make([]float64, iHi-iLo+1)}
	for i := iLo; i < iHi; i++ {
		pm, _ := s.lossMass(float64(i)*delta, float64(i+1)*delta)
		out.p[i-iLo] += pm
	}
	return out
}

// TestPLDSandwich brackets the true ε of many subsampled steps between the accountant's
// connect-the-dots value and an independent lower bound (losses rounded down on a 4× finer
// grid): the accountant is never below the lower bound, and the bracket is tight.
func TestPLDSandwich(t *testing.T) {
	for _, tc := range []struct {
		q, z  float64
		steps int
	}{{0.05, 0.9, 100}, {0.2, 1.5, 50}} {
		upper := pldEpsilon(t, DefaultPLDDiscretization, tc.q, tc.z, tc.steps, 1e-5)
		fine := DefaultPLDDiscretization / 4
		var lower float64
		for _, remove := range []bool{true, false} {
			d := optimisticStep(gaussianPLDStep{q: tc.q, z: tc.z, remove: remove}, fine)
			var plans fftPlans
			total := compose([]lossPMF{d}, []stepMGF{d.chernoff(fine)}, []int{tc.steps}, fine, 1e-11, &plans)
			total.inf = 0 // drop the pessimistic Chernoff allowance: this is the lower bound
			lower = math.Max(lower, total.epsilon(1e-5, fine))
		}
		t.Logf("q=%v z=%v T=%d: lower %.5f ≤ PLD %.5f", tc.q, tc.z, tc.steps, lower, upper)
		if upper < lower {
			t.Errorf("q=%v z=%v T=%d: PLD ε = %.6f is below the lower bound %.6f", tc.q, tc.z, tc.steps, upper, lower)
		}
		if upper > lower+0.005*lower+1e-3 {
			t.Errorf("q=%v z=%v T=%d: PLD ε = %.6f far above the lower bound %.6f", tc.q, tc.z, tc.steps, upper, lower)
		}
	}
}
