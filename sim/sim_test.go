package sim

import (
	"context"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"shoal/data"
	"shoal/fl"
	"shoal/nn"
	"shoal/strategy"
	"shoal/trainer"
)

// blobs is a small learnable dataset: class c's examples sit around a distinct centre.
func blobs(n, dim, classes int, seed uint64) *data.Dataset {
	rng := rand.New(rand.NewPCG(seed, 7))
	d := &data.Dataset{Name: "blobs", X: make([]float32, n*dim), Y: make([]int32, n), Dim: dim, C: 1, H: 1, W: dim, Classes: classes}
	for i := range n {
		c := i % classes
		d.Y[i] = int32(c)
		for j := range dim {
			centre := 0.0
			if j%classes == c {
				centre = 2
			}
			d.X[i*dim+j] = float32(centre + rng.NormFloat64()*0.5)
		}
	}
	return d
}

func federation(t testing.TB, clients, perClient int) *data.Federated {
	t.Helper()
	train := blobs(clients*perClient, 8, 4, 1)
	parts, err := data.Partition("iid", train.Y, train.Classes, clients, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	return &data.Federated{Train: train, Test: blobs(400, 8, 4, 2), Clients: parts}
}

func engine(t testing.TB, fed *data.Federated, cfg Config, fraction float64) (*fl.Engine, []float32) {
	t.Helper()
	model, err := nn.New("logreg", nn.Shape{C: 1, H: 1, W: fed.Train.Dim}, fed.Train.Classes, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(model, fed, cfg)
	if err != nil {
		t.Fatal(err)
	}
	evaluator, err := trainer.NewEvaluator(model, fed.Test, 2)
	if err != nil {
		t.Fatal(err)
	}
	strat, _ := strategy.New("fedavg", nil)
	sampler, _ := fl.NewFractionSampler(fraction, 1)
	e := &fl.Engine{
		Config:   fl.EngineConfig{Rounds: 3, MinResults: 1, Fit: fl.FitConfig{Epochs: 1, BatchSize: 5, LR: 0.3}},
		Strategy: strat, Sampler: sampler, Transport: s, Evaluate: evaluator.Evaluate,
		Source: rand.NewPCG(cfg.Seed, 3),
	}
	return e, slices.Clone(model.Params())
}

func TestSimulationLearnsAndIsDeterministic(t *testing.T) {
	fed := federation(t, 20, 30)
	run := func() ([]float32, []fl.RoundReport) {
		e, params := engine(t, fed, Config{Seed: 42, Workers: 2}, 0.5)
		hist, err := e.Run(context.Background(), params)
		if err != nil {
			t.Fatal(err)
		}
		return params, hist
	}
	p1, h1 := run()
	p2, _ := run()
	if !slices.Equal(p1, p2) {
		t.Fatal("two runs with the same seed gave different models")
	}
	if acc := h1[len(h1)-1].Accuracy; acc < 0.9 {
		t.Fatalf("accuracy %.3f after 3 rounds on separable blobs, want ≥ 0.9", acc)
	}
	for _, r := range h1 {
		if r.Participants != 10 || r.Dropped != 0 {
			t.Fatalf("round %d: %d participants, %d dropped; want 10, 0", r.Round, r.Participants, r.Dropped)
		}
	}
}

func TestSimulationDropoutAndFaults(t *testing.T) {
	fed := federation(t, 40, 10)
	cfg := Config{Seed: 5, Dropout: 0.3, Fault: func(id fl.ClientID, res *fl.FitRes) error {
		if id%7 == 0 {
			res.Update[0] = float32(math.NaN()) // a client sending garbage is dropped, not fatal
		}
		if id == 11 {
			panic("client bug") // a crashing client is dropped too
		}
		return nil
	}}
	e, params := engine(t, fed, cfg, 1)
	hist, err := e.Run(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range hist {
		if r.Participants+r.Dropped != 40 {
			t.Fatalf("round %d: %d + %d ≠ 40 sampled", r.Round, r.Participants, r.Dropped)
		}
		if r.Dropped < 6 || r.Participants < 10 {
			t.Fatalf("round %d: dropped %d, participants %d: dropout/faults not applied", r.Round, r.Dropped, r.Participants)
		}
	}
	for _, p := range params {
		if math.IsNaN(float64(p)) {
			t.Fatal("a NaN update reached the global model")
		}
	}
}

func TestSimulationStragglersMissTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fed := federation(t, 10, 10)
		e, params := engine(t, fed, Config{Seed: 9, StragglerFraction: 0.5, StragglerDelay: time.Hour}, 1)
		e.Config.RoundTimeout = time.Minute
		e.Config.Rounds = 1
		start := time.Now()
		hist, err := e.Run(context.Background(), params)
		if err != nil {
			t.Fatal(err)
		}
		r := hist[0]
		if r.Dropped == 0 || r.Participants == 0 || r.Participants+r.Dropped != 10 {
			t.Fatalf("participants %d dropped %d: want some stragglers left out", r.Participants, r.Dropped)
		}
		if time.Since(start) != time.Minute {
			t.Fatalf("round took %v of fake time, want the 1m deadline", time.Since(start))
		}
	})
}

// Registered clients cost only their index lists: 10,000 of them fit in a few MB.
func TestTenThousandClientsFitInMemory(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fed := federation(t, 10_000, 2)
	e, params := engine(t, fed, Config{Seed: 1}, 0.01)
	e.Config.Rounds = 2
	if _, err := e.Run(context.Background(), params); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 64<<20 {
		t.Fatalf("10,000 clients took %d MB of heap", grown>>20)
	}
	if e.Transport.NumClients() != 10_000 {
		t.Fatal("client count")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	fed := federation(t, 4, 5)
	model, _ := nn.New("logreg", nn.Shape{C: 1, H: 1, W: 8}, 4, rand.New(rand.NewPCG(1, 1)))
	for _, cfg := range []Config{{Dropout: 1}, {Dropout: -0.1}, {StragglerFraction: 2}} {
		if _, err := New(model, fed, cfg); err == nil {
			t.Fatalf("config %+v accepted", cfg)
		}
	}
}

func mustStrategy(t *testing.T, name string) fl.Strategy {
	t.Helper()
	s, err := strategy.New(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Federated evaluation scores the new model on each sampled client's local test data.
func TestFederatedEvaluation(t *testing.T) {
	fed := federation(t, 10, 20)
	parts, err := data.Partition("iid", fed.Test.Y, fed.Test.Classes, 10, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	fed.TestClients = parts
	e, params := engine(t, fed, Config{Seed: 3}, 0.5)
	e.Config.FederatedEval = true
	hist, err := e.Run(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	last := hist[len(hist)-1]
	// The local test parts are IID samples of the pooled test set: both estimates agree roughly.
	if last.FedAccuracy <= 0 || math.Abs(last.FedAccuracy-last.Accuracy) > 0.15 {
		t.Fatalf("federated accuracy %v vs central %v", last.FedAccuracy, last.Accuracy)
	}
}
