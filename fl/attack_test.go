package fl_test

import (
	"context"
	"math"
	"testing"
	"time"

	"shoal/fl"
)

// Attack: one client sends an enormous but finite update. On the old engine the model became
// +Inf and Run stopped with an error: one client could end the run. Now the round is abandoned
// with the model unchanged, and the next round goes on.
func TestAttackHugeUpdateAbandonsTheRoundNotTheRun(t *testing.T) {
	tr := &fakeTransport{n: 3, answer: func(id fl.ClientID, ins fl.FitIns) (fl.FitRes, time.Duration, error) {
		v := float32(0.1)
		if id == 2 && ins.Round <= 2 {
			v = math.MaxFloat32 // finite, so it passes validation; the aggregate overflows
		}
		return fl.FitRes{Update: []float32{v, v}, NumExamples: 1}, 0, nil
	}}
	e := newEngine(t, tr, "fedavg")
	e.Config.Rounds = 3
	start := float32(0.9 * math.MaxFloat32) // the mean of rounds 1 and 2 pushes it past MaxFloat32
	global := []float32{start, 0}
	hist, err := e.Run(context.Background(), global)
	if err != nil {
		t.Fatalf("one client ended the run: %v", err)
	}
	if len(hist) != 3 || hist[0].Abandoned == "" || hist[1].Abandoned == "" || hist[2].Abandoned != "" {
		t.Fatalf("history %+v: want rounds 1 and 2 abandoned and round 3 applied", hist)
	}
	if global[0] != start+0.1 || global[1] != 0.1 {
		t.Fatalf("model %v after two abandoned rounds and one good one", global)
	}
}

// A round is committed before any client sees its model: federated evaluation of round r never
// runs before Commit(r) returned, so a crash in between cannot release a model (and its noise)
// that a resumed run would draw and release again.
func TestCommitBeforeFederatedEvaluation(t *testing.T) {
	var committed, evaluatedBeforeCommit int
	tr := &evalTransport{fakeTransport: fakeTransport{n: 2, answer: func(fl.ClientID, fl.FitIns) (fl.FitRes, time.Duration, error) {
		return fl.FitRes{Update: []float32{0.1}, NumExamples: 1}, 0, nil
	}}}
	tr.onEvaluate = func() {
		if committed == 0 {
			evaluatedBeforeCommit++
		}
		committed--
	}
	e := newEngine(t, tr, "fedavg")
	e.Config.Rounds, e.Config.FederatedEval = 3, true
	e.Commit = func(fl.Checkpoint, fl.RoundReport) error { committed++; return nil }
	hist, err := e.Run(context.Background(), []float32{0})
	if err != nil {
		t.Fatal(err)
	}
	if evaluatedBeforeCommit != 0 || hist[2].FedAccuracy != 0.5 {
		t.Fatalf("%d federated evaluations ran before their round was committed; history %+v", evaluatedBeforeCommit, hist)
	}
}

type evalTransport struct {
	fakeTransport
	onEvaluate func()
}

func (t *evalTransport) Evaluate(_ context.Context, cohort []fl.ClientID, _ []float32, deliver func(fl.EvalOutcome)) error {
	t.onEvaluate()
	for _, id := range cohort {
		deliver(fl.EvalOutcome{Client: id, Res: fl.EvalRes{Accuracy: 0.5, Loss: 1, NumExamples: 1}})
	}
	return nil
}
