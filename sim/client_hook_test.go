package sim

import (
	"context"
	"slices"
	"sync"
	"testing"

	"shoal/fl"
)

// hookClient records what the simulation asked of it and returns a fixed update.
type hookClient struct {
	vc   VirtualClient
	seen *sync.Map
}

func (c hookClient) Fit(_ context.Context, ins fl.FitIns) (fl.FitRes, error) {
	c.seen.Store(c.vc.ID, c.vc)
	u := make([]float32, len(ins.Params))
	u[0] = 1
	return fl.FitRes{Update: u, NumExamples: len(c.vc.Train)}, nil
}

func (c hookClient) Evaluate(context.Context, []float32) (fl.EvalRes, error) {
	return fl.EvalRes{Loss: 1, Accuracy: 0.5, NumExamples: len(c.vc.Test)}, nil
}

// With Config.NewClient every worker makes its clients through its own factory, which sees the
// virtual client's partition; the built-in trainer is not used.
func TestNewClientHookReplacesTheTrainer(t *testing.T) {
	fed := federation(t, 6, 10)
	var seen sync.Map
	var workers []int
	var mu sync.Mutex
	cfg := Config{Workers: 2, Seed: 5, NewClient: func(w int) (ClientFactory, error) {
		mu.Lock()
		workers = append(workers, w)
		mu.Unlock()
		return func(vc VirtualClient) fl.Client { return hookClient{vc: vc, seen: &seen} }, nil
	}}
	e, params := engine(t, fed, cfg, 1)
	e.Config.Rounds = 1
	before := slices.Clone(params)
	if _, err := e.Run(context.Background(), params); err != nil {
		t.Fatal(err)
	}
	if slices.Sort(workers); !slices.Equal(workers, []int{0, 1}) {
		t.Fatalf("factories made for workers %v", workers)
	}
	for id := range 6 {
		v, ok := seen.Load(fl.ClientID(id))
		if !ok {
			t.Fatalf("client %d never trained", id)
		}
		if vc := v.(VirtualClient); vc.Round != 1 || !slices.Equal(vc.Train, fed.Clients[id]) {
			t.Fatalf("client %d: %+v", id, vc)
		}
	}
	if params[0] != before[0]+1 || params[1] != before[1] {
		t.Fatalf("the hook's updates were not aggregated: %v → %v", before[:2], params[:2])
	}
}
