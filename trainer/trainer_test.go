package trainer

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"shoal/fl"
	"shoal/nn"
	"shoal/privacy"
)

func client(t *testing.T) (*Client, []float32) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	m, err := nn.New("2nn", nn.Shape{C: 1, H: 1, W: 6}, 3, rng)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, 40*6)
	y := make([]int32, 40)
	for i := range y {
		y[i] = int32(i % 3)
		for j := range 6 {
			x[i*6+j] = float32(rng.NormFloat64()) + float32(y[i])
		}
	}
	return &Client{Model: m, X: x, Y: y, Rand: rng, NoiseSource: privacy.NewSeededSource(3)}, slices.Clone(m.Params())
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func TestFitReturnsDeltaAndClips(t *testing.T) {
	c, global := client(t)
	cfg := fl.FitConfig{Epochs: 2, BatchSize: 4, LR: 0.5}
	res, err := c.Fit(context.Background(), fl.FitIns{Round: 1, Params: global, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	raw := norm(res.Update)
	if raw == 0 || res.NumExamples != 40 {
		t.Fatalf("empty update or wrong count: norm %v, n %d", raw, res.NumExamples)
	}
	for _, perLayer := range []bool{false, true} {
		c, global := client(t)
		cfg.ClipNorm, cfg.PerLayerClip = float32(raw/4), perLayer
		res, err := c.Fit(context.Background(), fl.FitIns{Round: 1, Params: global, Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		if n := norm(res.Update); n > raw/4*(1+1e-6) {
			t.Fatalf("per-layer %v: clipped norm %v > S = %v", perLayer, n, raw/4)
		}
		if res.Unclipped != 0 {
			t.Fatalf("per-layer %v: a clipped update reported as unclipped", perLayer)
		}
	}
	c, global = client(t)
	cfg.ClipNorm, cfg.PerLayerClip = float32(raw*4), false
	res, _ = c.Fit(context.Background(), fl.FitIns{Round: 1, Params: global, Config: cfg})
	if res.Unclipped != 1 || math.Abs(norm(res.Update)-raw) > 1e-4*raw {
		t.Fatalf("an update within the clip norm must pass unchanged: norm %v vs %v, unclipped %v", norm(res.Update), raw, res.Unclipped)
	}
}

func TestLocalNoiseHasTheConfiguredSpread(t *testing.T) {
	c, global := client(t)
	cfg := fl.FitConfig{Epochs: 1, BatchSize: 4, LR: 0.1, ClipNorm: 0.01, LocalNoiseStd: 0.5}
	res, err := c.Fit(context.Background(), fl.FitIns{Round: 1, Params: global, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	// The clipped signal has norm ≤ 0.01 against a noise norm of ≈ 100, so the update is essentially the noise.
	var sum, sq float64
	for _, v := range res.Update {
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	n := float64(len(res.Update))
	mean, sd := sum/n, math.Sqrt(sq/n)
	if math.Abs(mean) > 5*0.5/math.Sqrt(n) || math.Abs(sd-0.5) > 0.05 {
		t.Fatalf("local noise mean %v sd %v over %v coordinates, want 0 and 0.5", mean, sd, n)
	}
}

func TestFitRejectsMismatchedModel(t *testing.T) {
	c, _ := client(t)
	if _, err := c.Fit(context.Background(), fl.FitIns{Params: make([]float32, 3), Config: fl.FitConfig{Epochs: 1, BatchSize: 1, LR: 0.1}}); err == nil {
		t.Fatal("a global model of the wrong size was accepted")
	}
}
