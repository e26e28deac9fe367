package privacy

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
)

func TestValueNoiseMultiplier(t *testing.T) {
	a, err := NewAdaptiveClipper(DefaultAdaptiveClipConfig(100)) // σ_b = 5
	if err != nil {
		t.Fatal(err)
	}
	zd, err := a.ValueNoiseMultiplier(1)
	if err != nil {
		t.Fatal(err)
	}
	if want := 1 / math.Sqrt(1-1.0/100); math.Abs(zd-want) > 1e-12 {
		t.Errorf("z_Δ = %v, want %v", zd, want)
	}
	// Composition check: z_Δ and 2σ_b together give back z.
	if z := 1 / math.Sqrt(1/(zd*zd)+1/100.0); math.Abs(z-1) > 1e-12 {
		t.Errorf("combined multiplier %v, want 1", z)
	}
	small, _ := NewAdaptiveClipper(DefaultAdaptiveClipConfig(10)) // σ_b = 0.5: 2σ_b = 1
	if _, err := small.ValueNoiseMultiplier(1); err == nil {
		t.Error("count noise too small for z: no error")
	}
	if _, err := small.ValueNoiseMultiplier(0.9); err != nil {
		t.Errorf("z = 0.9 < 2σ_b = 1 refused: %v", err)
	}
}

// The clip converges to the target quantile of the norm distribution.
func TestAdaptiveClipTracksQuantile(t *testing.T) {
	const clients = 1000
	r := rand.New(rand.NewPCG(7, 7))
	src := NewSeededSource(7)
	for _, target := range []float64{0.5, 0.9} {
		cfg := DefaultAdaptiveClipConfig(clients)
		cfg.TargetQuantile = target
		a, err := NewAdaptiveClipper(cfg)
		if err != nil {
			t.Fatal(err)
		}
		// Norms are log-normal: log N ~ N(log 3, 0.5²); quantile p is 3·e^{0.5·Φ⁻¹(p)}.
		want := 3 * math.Exp(0.5*math.Sqrt2*math.Erfinv(2*target-1))
		for range 200 {
			var sum float64
			for range clients {
				sum += Indicator(3*math.Exp(0.5*r.NormFloat64()), a.Clip())
			}
			if _, _, err := a.Update(sum, src); err != nil {
				t.Fatal(err)
			}
		}
		if got := a.Clip(); math.Abs(got-want) > 0.1*want {
			t.Errorf("target quantile %v: clip %v after 200 rounds, want ≈ %v", target, got, want)
		}
	}
}

func TestAdaptiveClipperStateAndBadInput(t *testing.T) {
	a, _ := NewAdaptiveClipper(DefaultAdaptiveClipConfig(50))
	if _, _, err := a.Update(10, NewSeededSource(1)); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	b, err := RestoreAdaptiveClipper(data)
	if err != nil {
		t.Fatal(err)
	}
	if b.Clip() != a.Clip() || b.Config() != a.Config() {
		t.Errorf("restored %+v clip %v, want %+v clip %v", b.Config(), b.Clip(), a.Config(), a.Clip())
	}
	if _, _, err := a.Update(math.NaN(), NewSeededSource(1)); err == nil {
		t.Error("NaN indicator sum accepted")
	}
	for _, mut := range []func(*AdaptiveClipConfig){
		func(c *AdaptiveClipConfig) { c.InitialClip = 0 },
		func(c *AdaptiveClipConfig) { c.TargetQuantile = 1.5 },
		func(c *AdaptiveClipConfig) { c.LearningRate = -1 },
		func(c *AdaptiveClipConfig) { c.CountStddev = math.NaN() },
		func(c *AdaptiveClipConfig) { c.ExpectedClients = 0 },
	} {
		cfg := DefaultAdaptiveClipConfig(50)
		mut(&cfg)
		if _, err := NewAdaptiveClipper(cfg); err == nil {
			t.Errorf("bad config %+v accepted", cfg)
		}
	}
	if _, err := RestoreAdaptiveClipper([]byte(`{"config":{},"clip":1}`)); err == nil {
		t.Error("restore of an empty config accepted")
	}
}
