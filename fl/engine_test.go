package fl_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"shoal/fl"
	"shoal/strategy"
)

// fakeTransport answers each client's fit with behaviour[id]: its update, or an error, or a delay.
type fakeTransport struct {
	n      int
	answer func(id fl.ClientID, ins fl.FitIns) (fl.FitRes, time.Duration, error)
}

func (f *fakeTransport) NumClients() int { return f.n }

func (f *fakeTransport) Fit(ctx context.Context, cohort []fl.ClientID, ins fl.FitIns, deliver func(fl.FitOutcome)) error {
	results := make(chan fl.FitOutcome, len(cohort))
	for _, id := range cohort {
		go func() {
			res, delay, err := f.answer(id, ins)
			select {
			case <-time.After(delay):
				results <- fl.FitOutcome{Client: id, Res: res, Err: err}
			case <-ctx.Done():
				results <- fl.FitOutcome{Client: id, Err: fl.ErrTimeout}
			}
		}()
	}
	for range cohort {
		deliver(<-results)
	}
	return ctx.Err()
}

func (f *fakeTransport) Evaluate(context.Context, []fl.ClientID, []float32, func(fl.EvalOutcome)) error {
	return nil
}

func (f *fakeTransport) Exchange(context.Context, int, int, map[fl.ClientID][]byte, func(fl.ClientID, []byte, error)) error {
	return errors.New("no secure sum here")
}

func newEngine(t *testing.T, tr fl.Transport, strat string) *fl.Engine {
	t.Helper()
	s, err := strategy.New(strat, nil)
	if err != nil {
		t.Fatal(err)
	}
	sampler, _ := fl.NewFractionSampler(1, 1)
	return &fl.Engine{
		Config:    fl.EngineConfig{Rounds: 1, MinResults: 1, Fit: fl.FitConfig{Epochs: 1, BatchSize: 1, LR: 0.1}},
		Strategy:  s,
		Sampler:   sampler,
		Transport: tr,
		Source:    rand.NewPCG(1, 1),
	}
}

// Client i sends update (i+1)·1 with weight i+1; client 2 misbehaves as told.
func TestEngineDropsBadClientsAndAveragesTheRest(t *testing.T) {
	for _, tc := range []struct {
		name string
		bad  func() (fl.FitRes, error)
	}{
		{"nan", func() (fl.FitRes, error) {
			return fl.FitRes{Update: []float32{float32(math.NaN()), 0}, NumExamples: 3}, nil
		}},
		{"inf", func() (fl.FitRes, error) {
			return fl.FitRes{Update: []float32{0, float32(math.Inf(1))}, NumExamples: 3}, nil
		}},
		{"wrong-dim", func() (fl.FitRes, error) { return fl.FitRes{Update: []float32{1, 2, 3}, NumExamples: 3}, nil }},
		{"zero-weight", func() (fl.FitRes, error) { return fl.FitRes{Update: []float32{1, 1}, NumExamples: 0}, nil }},
		{"error", func() (fl.FitRes, error) { return fl.FitRes{}, errors.New("disk on fire") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &fakeTransport{n: 4, answer: func(id fl.ClientID, _ fl.FitIns) (fl.FitRes, time.Duration, error) {
				if id == 2 {
					res, err := tc.bad()
					return res, 0, err
				}
				v := float32(id + 1)
				return fl.FitRes{Update: []float32{v, -v}, NumExamples: int(id + 1)}, 0, nil
			}}
			e := newEngine(t, tr, "fedavg")
			global := []float32{0, 0}
			rep, err := e.RunRound(context.Background(), 1, global)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Participants != 3 || rep.Dropped != 1 {
				t.Fatalf("participants %d dropped %d, want 3 and 1", rep.Participants, rep.Dropped)
			}
			// Weighted mean of clients 0, 1, 3: (1·1 + 2·2 + 4·4)/(1+2+4) = 3.
			if math.Abs(float64(global[0])-3) > 1e-6 || math.Abs(float64(global[1])+3) > 1e-6 {
				t.Fatalf("global = %v, want [3 -3]", global)
			}
		})
	}
}

func TestEngineAbandonsRoundBelowMinResults(t *testing.T) {
	tr := &fakeTransport{n: 3, answer: func(id fl.ClientID, _ fl.FitIns) (fl.FitRes, time.Duration, error) {
		if id > 0 {
			return fl.FitRes{}, 0, fl.ErrDropped
		}
		return fl.FitRes{Update: []float32{1}, NumExamples: 1}, 0, nil
	}}
	e := newEngine(t, tr, "fedavg")
	e.Config.MinResults = 2
	global := []float32{7}
	rep, err := e.RunRound(context.Background(), 1, global)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Abandoned == "" || global[0] != 7 {
		t.Fatalf("round should be abandoned with the model unchanged: %+v, global %v", rep, global)
	}
}

// Stragglers past the round deadline are left out; the fake clock makes this instant.
func TestEngineRoundTimeoutLeavesOutStragglers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{n: 4, answer: func(id fl.ClientID, _ fl.FitIns) (fl.FitRes, time.Duration, error) {
			delay := time.Second
			if id == 3 {
				delay = time.Hour
			}
			return fl.FitRes{Update: []float32{1}, NumExamples: 1}, delay, nil
		}}
		e := newEngine(t, tr, "fedavg")
		e.Config.RoundTimeout = time.Minute
		e.Evaluate = func([]float32) (float64, float64, error) { time.Sleep(2 * time.Second); return 0, 0, nil }
		start := time.Now()
		rep, err := e.RunRound(context.Background(), 1, []float32{0})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Participants != 3 || rep.Dropped != 1 || rep.Stragglers != 1 {
			t.Fatalf("participants %d dropped %d stragglers %d, want 3, 1 and 1", rep.Participants, rep.Dropped, rep.Stragglers)
		}
		// The round's time by stage, on the fake clock: the fit waited for the deadline, the
		// evaluation took its 2 s.
		want := []fl.StageTime{{Stage: "fit", Seconds: 60}, {Stage: "aggregate", Seconds: 0}, {Stage: "evaluate", Seconds: 2}}
		if fmt.Sprint(rep.Stages) != fmt.Sprint(want) {
			t.Fatalf("stages %v, want %v", rep.Stages, want)
		}
		if took := time.Since(start); took != time.Minute+2*time.Second {
			t.Fatalf("round took %v of fake time, want exactly the 1m deadline and the 2s evaluation", took)
		}
	})
}

func TestEngineRunStopsAtTargetAccuracy(t *testing.T) {
	tr := &fakeTransport{n: 2, answer: func(fl.ClientID, fl.FitIns) (fl.FitRes, time.Duration, error) {
		return fl.FitRes{Update: []float32{0.1}, NumExamples: 1}, 0, nil
	}}
	e := newEngine(t, tr, "fedavg")
	e.Config.Rounds = 100
	e.Config.TargetAccuracy = 0.5
	e.Evaluate = func(p []float32) (float64, float64, error) { return 1 - float64(p[0]), float64(p[0]), nil }
	hist, err := e.Run(context.Background(), []float32{0})
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 5 || hist[4].Accuracy < 0.5 || hist[3].Accuracy >= 0.5 {
		t.Fatalf("ran %d rounds (%+v), want to stop at round 5", len(hist), hist[len(hist)-1])
	}
}

func TestEngineRefusesBadConfig(t *testing.T) {
	e := newEngine(t, &fakeTransport{n: 1}, "fedavg")
	e.Config.Fit.LR = float32(math.NaN())
	if _, err := e.Run(context.Background(), []float32{0}); err == nil {
		t.Fatal("NaN learning rate accepted")
	}
}

func TestSamplers(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	s, _ := fl.NewFractionSampler(0.1, 5)
	for _, n := range []int{3, 10, 100, 10000} {
		got := s.Sample(1, n, rng)
		want := min(max(int(math.Ceil(0.1*float64(n))), 5), n)
		seen := map[fl.ClientID]bool{}
		for _, id := range got {
			if id < 0 || int(id) >= n || seen[id] {
				t.Fatalf("n=%d: bad or repeated client %d", n, id)
			}
			seen[id] = true
		}
		if len(got) != want {
			t.Fatalf("n=%d: sampled %d, want %d", n, len(got), want)
		}
	}
	// Poisson: the cohort size is Binomial(n, q); over many rounds the mean is nq.
	p, _ := fl.NewPoissonSampler(0.02)
	total := 0
	for r := range 500 {
		total += len(p.Sample(r, 1000, rng))
	}
	mean := float64(total) / 500 // expected 20, sd of the mean ≈ sqrt(19.6/500) ≈ 0.2
	if math.Abs(mean-20) > 1 {
		t.Fatalf("Poisson mean cohort %.2f, want ≈ 20", mean)
	}
	for _, q := range []float64{0, -1, 1.5, math.NaN()} {
		if _, err := fl.NewPoissonSampler(q); err == nil {
			t.Fatalf("q = %v accepted", q)
		}
	}
}
