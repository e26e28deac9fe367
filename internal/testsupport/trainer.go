package testsupport

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"shoal/fl"
	"shoal/strategy"
)

// Trainer is an in-memory fl.Client. Its update is Update(ID, round, params), so the
// aggregate of a round can be computed without it (FedAvg); its evaluation accuracy is ID/10.
type Trainer struct {
	ID fl.ClientID
	N  int // examples: the trainer's aggregation weight
	// Started, if set, is told the trainer's id when a fit starts.
	Started chan<- fl.ClientID
	// Block, if set, holds every fit until it is closed or the fit's context is done (then
	// the fit fails with the context's error): a client that never answers.
	Block <-chan struct{}
}

var _ fl.Client = (*Trainer)(nil)

// Fit returns Update(ID, round, params) with N examples and loss ID.
func (c *Trainer) Fit(ctx context.Context, ins fl.FitIns) (fl.FitRes, error) {
	if c.Started != nil {
		c.Started <- c.ID
	}
	if c.Block != nil {
		select {
		case <-c.Block:
		case <-ctx.Done():
			return fl.FitRes{}, ctx.Err()
		}
	}
	return fl.FitRes{Update: Update(c.ID, ins.Round, ins.Params), NumExamples: c.N, Loss: float64(c.ID)}, nil
}

// Evaluate returns loss 1 and accuracy ID/10 over N examples.
func (c *Trainer) Evaluate(_ context.Context, _ []float32) (fl.EvalRes, error) {
	return fl.EvalRes{Loss: 1, Accuracy: float64(c.ID) / 10, NumExamples: c.N}, nil
}

// Update is the update a Trainer with id sends in round for the global model params.
func Update(id fl.ClientID, round int, params []float32) []float32 {
	u := make([]float32, len(params))
	for j := range u {
		u[j] = float32(int(id)+1)*0.01 + float32(j%5)*0.001 + float32(round)*0.0001 - params[j]*0.5
	}
	return u
}

// FedAvg is the global model after a FedAvg round in which exactly the given trainers (id →
// examples) were aggregated, computed without any transport.
func FedAvg(global []float32, round int, clients map[fl.ClientID]int) []float32 {
	sum := make([]float64, len(global))
	var w float64
	for id, n := range clients {
		u := Update(id, round, global)
		for j := range u {
			sum[j] += float64(n) * float64(u[j])
		}
		w += float64(n)
	}
	out := make([]float32, len(global))
	for j := range out {
		out[j] = global[j] + float32(sum[j]/w)
	}
	return out
}

// CloseTo fails the test unless got and want have the same length and agree within tol.
func CloseTo(t testing.TB, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("length %d, want %d", len(got), len(want))
	}
	for j := range got {
		if math.Abs(float64(got[j]-want[j])) > tol {
			t.Fatalf("coordinate %d: got %v, want %v", j, got[j], want[j])
		}
	}
}

// Fixed is a client runtime's Local that answers every task with c.
func Fixed(c fl.Client) func(int, fl.ClientID) (fl.Client, error) {
	return func(int, fl.ClientID) (fl.Client, error) { return c, nil }
}

// Trainers is a client runtime's Local that answers every task with a Trainer of the client
// id the server gave, with n examples, changed by opts (to block it, or to hear of its fits).
func Trainers(n int, opts ...func(*Trainer)) func(int, fl.ClientID) (fl.Client, error) {
	return func(_ int, id fl.ClientID) (fl.Client, error) {
		c := &Trainer{ID: id, N: n}
		for _, o := range opts {
			o(c)
		}
		return c, nil
	}
}

// Engine is a one-round FedAvg engine over tr that samples the given fraction of the
// clients and needs one result.
func Engine(tb testing.TB, tr fl.Transport, fraction float64) *fl.Engine {
	tb.Helper()
	sampler, err := fl.NewFractionSampler(fraction, 1)
	if err != nil {
		tb.Fatal(err)
	}
	return &fl.Engine{
		Config:   fl.EngineConfig{Rounds: 1, MinResults: 1, Fit: fl.FitConfig{Epochs: 1, BatchSize: 1, LR: 0.1}},
		Strategy: FedAvgStrategy(tb), Sampler: sampler, Transport: tr, Source: Source(),
	}
}

// FedAvgStrategy is the FedAvg strategy with default options.
func FedAvgStrategy(tb testing.TB) fl.Strategy {
	tb.Helper()
	s, err := strategy.New("fedavg", nil)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// FullSampler samples every client every round.
func FullSampler(tb testing.TB) fl.Sampler {
	tb.Helper()
	s, err := fl.NewFractionSampler(1, 1)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// Source is the engine's sampling stream, seeded the same in every test.
func Source() *rand.PCG { return rand.NewPCG(1, 2) }

// Echo is an fl.Client whose update is as large as the model (the global parameters halved,
// negated): a fit's payload is the model's size both ways.
type Echo struct{}

// Fit returns -params/2 with one example.
func (Echo) Fit(_ context.Context, ins fl.FitIns) (fl.FitRes, error) {
	u := make([]float32, len(ins.Params))
	for j, p := range ins.Params {
		u[j] = -p / 2
	}
	return fl.FitRes{Update: u, NumExamples: 1}, nil
}

// Evaluate returns an empty result.
func (Echo) Evaluate(context.Context, []float32) (fl.EvalRes, error) { return fl.EvalRes{}, nil }
