package fl_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"shoal/fl"
	"shoal/privacy"
	"shoal/strategy"
)

// trainingTransport answers a fit with an update that depends on the global model and the
// client, so that a resumed run that restored anything wrongly (model, sampler position, server
// momentum, adaptive clip, accountant) drifts from the uninterrupted one.
func trainingTransport() *fakeTransport {
	return &fakeTransport{n: 40, answer: func(id fl.ClientID, ins fl.FitIns) (fl.FitRes, time.Duration, error) {
		u := make([]float32, len(ins.Params))
		for j, p := range ins.Params {
			u[j] = 0.01*float32(int(id)%7-3) - 0.1*p + 0.001*float32(j)
		}
		return fl.FitRes{Update: u, NumExamples: 1 + int(id)%5, Unclipped: float64(int(id) % 2)}, 0, nil
	}}
}

// dpEngine is a FedAvgM engine with central DP and adaptive clipping, all seeded: everything
// that keeps state between rounds.
func dpEngine(t *testing.T) *fl.Engine {
	t.Helper()
	strat, err := strategy.New("fedavgm", nil)
	if err != nil {
		t.Fatal(err)
	}
	acct, _ := privacy.NewAccountant("rdp")
	ac := privacy.DefaultAdaptiveClipConfig(20)
	ac.InitialClip = 0.05
	clipper, err := privacy.NewAdaptiveClipper(ac)
	if err != nil {
		t.Fatal(err)
	}
	dp, err := fl.NewDPFedAvg(fl.DPConfig{Placement: fl.PlacementCentral, NoiseMultiplier: 0.5, Clip: 0.05, SamplingRate: 0.5,
		Clients: 40, Delta: 1e-5, Accountant: acct, NoiseSeed: 99, Adaptive: clipper})
	if err != nil {
		t.Fatal(err)
	}
	return &fl.Engine{
		Config:   fl.EngineConfig{Rounds: 6, MinResults: 1, Fit: fl.FitConfig{Epochs: 1, BatchSize: 1, LR: 0.1}},
		Strategy: strat, Sampler: &fl.PoissonSampler{Q: 0.5}, Transport: trainingTransport(),
		Source: rand.NewPCG(5, 6), Privacy: dp,
	}
}

// A run stopped after round 3 and restored from its checkpoint into a fresh engine finishes
// exactly as the uninterrupted run: same model bit for bit, same ε and clip per round.
func TestRestoredRunContinuesExactly(t *testing.T) {
	whole := dpEngine(t)
	wantModel := make([]float32, 8)
	want, err := whole.Run(context.Background(), wantModel)
	if err != nil {
		t.Fatal(err)
	}

	first := dpEngine(t)
	first.Config.Rounds = 3
	var saved fl.Checkpoint
	first.Commit = func(cp fl.Checkpoint, rep fl.RoundReport) error {
		saved = cp
		saved.Model = slices.Clone(cp.Model) // the engine goes on training its own slice
		return nil
	}
	if _, err := first.Run(context.Background(), make([]float32, 8)); err != nil {
		t.Fatal(err)
	}
	if saved.Round != 3 || saved.Strategy == nil || saved.Privacy == nil || saved.Sampler == nil {
		t.Fatalf("checkpoint after round 3: round %d, strategy %d B, privacy %d B, sampler %d B",
			saved.Round, len(saved.Strategy), len(saved.Privacy), len(saved.Sampler))
	}

	resumed := dpEngine(t)
	if err := resumed.Restore(saved); err != nil {
		t.Fatal(err)
	}
	model := make([]float32, 8) // Run starts from the checkpoint's model, not this one
	got, err := resumed.Run(context.Background(), model)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Round != 4 {
		t.Fatalf("resumed run ran rounds %+v, want 4..6", got)
	}
	if !slices.Equal(model, wantModel) {
		t.Fatalf("resumed model %v, uninterrupted %v", model, wantModel)
	}
	for i, r := range got {
		w := want[3+i]
		if r.Epsilon != w.Epsilon || r.ClipNorm != w.ClipNorm || r.Participants != w.Participants {
			t.Fatalf("round %d: resumed %+v, uninterrupted %+v", r.Round, r, w)
		}
	}
}

// A checkpoint that does not fit the run is refused with a message, never half-applied.
func TestRestoreRefusesMismatchedCheckpoints(t *testing.T) {
	e := dpEngine(t)
	var cp fl.Checkpoint
	e.Config.Rounds = 1
	e.Commit = func(c fl.Checkpoint, _ fl.RoundReport) error { cp = c; cp.Model = slices.Clone(c.Model); return nil }
	if _, err := e.Run(context.Background(), make([]float32, 8)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*fl.Checkpoint)
		want string
	}{
		{"no strategy state", func(c *fl.Checkpoint) { c.Strategy = nil }, "keeps state"},
		{"no privacy state", func(c *fl.Checkpoint) { c.Privacy = nil }, "keeps state"},
		{"corrupt strategy state", func(c *fl.Checkpoint) { c.Strategy = c.Strategy[:5] }, "strategy"},
		{"corrupt sampler", func(c *fl.Checkpoint) { c.Sampler = []byte("x") }, "sampler"},
		{"round 0", func(c *fl.Checkpoint) { c.Round = 0 }, "nothing to resume"},
	} {
		c := cp
		tc.mod(&c)
		if err := dpEngine(t).Restore(c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error mentioning %q", tc.name, err, tc.want)
		}
	}
	// A stateless strategy refuses a checkpoint that carries strategy state.
	plain := dpEngine(t)
	plain.Strategy, _ = strategy.New("fedavg", nil)
	if err := plain.Restore(cp); err == nil || !strings.Contains(err.Error(), "keeps none") {
		t.Errorf("fedavg restored fedavgm's state: %v", err)
	}
	// A model of the wrong size is refused when the run starts.
	wrong := dpEngine(t)
	if err := wrong.Restore(cp); err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.Run(context.Background(), make([]float32, 9)); err == nil || !strings.Contains(err.Error(), "parameters") {
		t.Errorf("a 9-parameter run resumed an 8-parameter checkpoint: %v", err)
	}
}
