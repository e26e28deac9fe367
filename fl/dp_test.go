package fl

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"shoal/privacy"
)

func dpConfig(t *testing.T) DPConfig {
	t.Helper()
	acct, err := privacy.NewAccountant("rdp")
	if err != nil {
		t.Fatal(err)
	}
	return DPConfig{Placement: PlacementCentral, NoiseMultiplier: 1.2, Clip: 0.5, SamplingRate: 0.01, Clients: 2000,
		Delta: 1e-5, Accountant: acct, Source: privacy.NewSeededSource(7)}
}

// Central noise on the mean has standard deviation z·S/(q·N), and the mean is the sum over q·N.
func TestDPFedAvgCentralNoiseAndFixedDenominator(t *testing.T) {
	d, err := NewDPFedAvg(dpConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := d.ConfigureFit(1, FitConfig{})
	if cfg.ClipNorm != 0.5 || !cfg.UnitWeights || cfg.LocalNoiseStd != 0 {
		t.Fatalf("fit config %+v", cfg)
	}
	const dim = 200_000
	sum := make([]float64, dim)
	for j := range sum {
		sum[j] = 4 // 20 expected clients: mean 0.2
	}
	mean, err := d.Finalize(1, sum, 20, 0)
	if err != nil {
		t.Fatal(err)
	}
	var m, sq float64
	for _, v := range mean {
		m += float64(v)
		sq += float64(v) * float64(v)
	}
	m /= dim
	sd := math.Sqrt(sq/dim - m*m)
	wantSD := 1.2 * 0.5 / 20
	if math.Abs(m-0.2) > 5*wantSD/math.Sqrt(dim) || math.Abs(sd-wantSD) > 0.01*wantSD {
		t.Fatalf("mean %v sd %v, want 0.2 and %v", m, sd, wantSD)
	}
}

// ε reported by the engine's accounting is the accountant's for q, z and the rounds run, and a
// maximum ε stops the run before the round that would pass it.
func TestDPFedAvgAccountsAndStopsAtBudget(t *testing.T) {
	c := dpConfig(t)
	ref, _ := privacy.NewAccountant("rdp")
	want, err := ref.EpsilonAfter(0.01, 1.2, 3, 1e-5)
	if err != nil {
		t.Fatal(err)
	}
	c.MaxEpsilon = want * 1.0001
	d, _ := NewDPFedAvg(c)
	var eps float64
	for r := 1; r <= 3; r++ {
		if err := d.CheckBudget(r); err != nil {
			t.Fatalf("round %d refused: %v", r, err)
		}
		if eps, _, err = d.Account(r); err != nil {
			t.Fatal(err)
		}
	}
	if math.Abs(eps-want) > 1e-12*want {
		t.Fatalf("ε after 3 rounds %v, accountant says %v", eps, want)
	}
	if err := d.CheckBudget(4); !errors.Is(err, ErrBudgetExhausted) {
		t.Fatalf("round 4 should exceed the budget: %v", err)
	}
}

func TestDPFedAvgLocalPlacement(t *testing.T) {
	c := dpConfig(t)
	c.Placement = PlacementLocal
	d, _ := NewDPFedAvg(c)
	cfg := d.ConfigureFit(1, FitConfig{})
	if math.Abs(float64(cfg.LocalNoiseStd)-1.2) > 1e-6 {
		t.Fatalf("local noise std %v, want 2·z·S = 1.2 (replace-one sensitivity 2S)", cfg.LocalNoiseStd)
	}
	mean, _ := d.Finalize(1, []float64{3, 6}, 3, 0)
	if mean[0] != 1 || mean[1] != 2 {
		t.Fatalf("local mean %v", mean)
	}
	// No amplification is claimed for local noise: q = 1 per round.
	eps, _, _ := d.Account(1)
	ref, _ := privacy.NewAccountant("rdp")
	want, _ := ref.EpsilonAfter(1, 1.2, 1, 1e-5)
	if math.Abs(eps-want) > 1e-9 {
		t.Fatalf("local ε %v, want %v", eps, want)
	}
}

func TestDPFedAvgRejectsBadConfig(t *testing.T) {
	for _, mut := range []func(*DPConfig){
		func(c *DPConfig) { c.NoiseMultiplier = 0 },
		func(c *DPConfig) { c.NoiseMultiplier = math.Inf(1) },
		func(c *DPConfig) { c.SamplingRate = 1.5 },
		func(c *DPConfig) { c.Delta = 1 },
		func(c *DPConfig) { c.Clip = -1 },
		func(c *DPConfig) { c.Placement = "cloud" },
	} {
		c := dpConfig(t)
		mut(&c)
		if _, err := NewDPFedAvg(c); err == nil {
			t.Fatalf("accepted %+v", c)
		}
	}
}

// The engine stops before the round that would exceed the budget and reports ε per round.
func TestEngineStopsAtPrivacyBudget(t *testing.T) {
	c := dpConfig(t)
	ref, _ := privacy.NewAccountant("rdp")
	c.MaxEpsilon, _ = ref.EpsilonAfter(0.01, 1.2, 5, 1e-5)
	c.MaxEpsilon *= 1.0001
	d, _ := NewDPFedAvg(c)
	e := &Engine{
		Config:    EngineConfig{Rounds: 50, MinResults: 1, Fit: FitConfig{Epochs: 1, BatchSize: 1, LR: 0.1}},
		Strategy:  meanStrategy{},
		Sampler:   &PoissonSampler{Q: 0.01},
		Transport: constTransport{n: 2000},
		Source:    rand.NewPCG(1, 1),
		Privacy:   d,
	}
	hist, err := e.Run(context.Background(), make([]float32, 4))
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 5 {
		t.Fatalf("ran %d rounds, want 5 within the budget", len(hist))
	}
	if hist[4].Epsilon > c.MaxEpsilon || hist[4].Epsilon <= hist[0].Epsilon || hist[4].Delta != 1e-5 {
		t.Fatalf("ε history: %+v", hist)
	}
}

type meanStrategy struct{}

func (meanStrategy) Name() string                                        { return "mean" }
func (meanStrategy) ConfigureFit(_ int, c FitConfig) FitConfig           { return c }
func (meanStrategy) NeedsIndividualUpdates() bool                        { return false }
func (meanStrategy) AggregateEvaluate(int, []EvalRes) (float64, float64) { return 0, 0 }
func (meanStrategy) AggregateFit(_ int, g []float32, a *Aggregate) error {
	for j := range g {
		g[j] += a.Mean[j]
	}
	return nil
}

// constTransport answers every fit with a small update.
type constTransport struct{ n int }

func (c constTransport) NumClients() int { return c.n }
func (c constTransport) Fit(_ context.Context, cohort []ClientID, ins FitIns, deliver func(FitOutcome)) error {
	for _, id := range cohort {
		u := make([]float32, len(ins.Params))
		for j := range u {
			u[j] = 0.01
		}
		deliver(FitOutcome{Client: id, Res: FitRes{Update: u, NumExamples: 5, Unclipped: 1}})
	}
	return nil
}
func (constTransport) Evaluate(context.Context, []ClientID, []float32, func(EvalOutcome)) error {
	return nil
}
func (constTransport) Exchange(context.Context, int, int, map[ClientID][]byte, func(ClientID, []byte, error)) error {
	return nil
}

// A run resumed from the saved state reports the same ε and uses the same clip as one that never
// stopped.
func TestDPFedAvgStateResumes(t *testing.T) {
	c := dpConfig(t)
	c.Adaptive = adaptiveClipper(t)
	d, err := NewDPFedAvg(c)
	if err != nil {
		t.Fatal(err)
	}
	for r := 1; r <= 3; r++ {
		_, _ = d.Finalize(r, make([]float64, 4), 5, 3)
		_, _, _ = d.Account(r)
	}
	state, err := d.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	c2 := dpConfig(t)
	c2.Adaptive = adaptiveClipper(t)
	d2, err := NewDPFedAvg(c2)
	if err != nil {
		t.Fatal(err)
	}
	if err := d2.RestoreState(state); err != nil {
		t.Fatal(err)
	}
	e1, _, _ := d.Account(4)
	e2, _, _ := d2.Account(4)
	if e1 != e2 || d2.clip() != d.clip() || d2.clip() == 0.25 {
		t.Fatalf("resumed ε %v clip %v, original ε %v clip %v", e2, d2.clip(), e1, d.clip())
	}
	if err := d2.RestoreState([]byte("{}")); err == nil {
		t.Fatal("empty state accepted")
	}
}

func adaptiveClipper(t *testing.T) *privacy.AdaptiveClipper {
	t.Helper()
	cfg := privacy.DefaultAdaptiveClipConfig(100)
	cfg.InitialClip = 0.25
	a, err := privacy.NewAdaptiveClipper(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// With a quantising secure sum the sensitivity of the sum exceeds the clip; central noise is
// calibrated to z·Sensitivity(S) (so the ε the accountant reports for z holds), for the fixed
// and the adaptive clip alike. A sensitivity below the clip, or not finite, is refused.
func TestDPFedAvgNoiseCalibratedToSensitivity(t *testing.T) {
	sens := func(clip float64) float64 { return 1.3*clip + 0.01 }
	c := dpConfig(t)
	c.Sensitivity = sens
	d, err := NewDPFedAvg(c)
	if err != nil {
		t.Fatal(err)
	}
	if std, err := d.NoiseStd(); err != nil || std != 1.2*sens(0.5) {
		t.Fatalf("noise std %v (%v), want z·Sensitivity(S) = %v", std, err, 1.2*sens(0.5))
	}
	if !strings.Contains(d.Describe(), "sensitivity 0.66") {
		t.Fatalf("describe: %s", d.Describe())
	}
	const dim = 200_000
	mean, err := d.Finalize(1, make([]float64, dim), 20, 0)
	if err != nil {
		t.Fatal(err)
	}
	var sq float64
	for _, v := range mean {
		sq += float64(v) * float64(v)
	}
	want := 1.2 * sens(0.5) / 20
	if sd := math.Sqrt(sq / dim); math.Abs(sd-want) > 0.01*want {
		t.Fatalf("noise sd on the mean %v, want z·Sensitivity(S)/(qN) = %v (z·S/(qN) would be %v)", sd, want, 1.2*0.5/20)
	}

	// Adaptive clipping: the round's clip goes through Sensitivity too, with the value multiplier.
	a := dpConfig(t)
	a.Adaptive = adaptiveClipper(t)
	a.Sensitivity = sens
	ad, err := NewDPFedAvg(a)
	if err != nil {
		t.Fatal(err)
	}
	vz, _ := a.Adaptive.ValueNoiseMultiplier(1.2)
	if std, _ := ad.NoiseStd(); math.Abs(std-vz*sens(a.Adaptive.Clip())) > 1e-12 {
		t.Fatalf("adaptive noise std %v, want %v", std, vz*sens(a.Adaptive.Clip()))
	}

	for _, bad := range []func(float64) float64{
		func(c float64) float64 { return 0.9 * c },
		func(float64) float64 { return math.NaN() },
		func(float64) float64 { return math.Inf(1) },
	} {
		c := dpConfig(t)
		c.Sensitivity = bad
		if _, err := NewDPFedAvg(c); err == nil {
			t.Fatal("a sensitivity below the clip or not finite accepted")
		}
	}
	// Local noise is added by each client before the sum: it needs no sensitivity of the sum.
	l := dpConfig(t)
	l.Placement, l.Sensitivity = PlacementLocal, sens
	ld, _ := NewDPFedAvg(l)
	if std, _ := ld.NoiseStd(); std != 0 {
		t.Fatalf("local placement: central noise std %v", std)
	}
}
