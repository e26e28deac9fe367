package process

import (
	"context"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"shoal/fl"
	"shoal/privacy"
)

// fake starts the test binary as a trainer in the given mode.
func fake(t *testing.T, mode string, env ...string) Config {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Config{Command: "'" + exe + "'", Env: append([]string{fakeEnv + "=" + mode}, env...), Stderr: io.Discard,
		StartTimeout: 20 * time.Second}
}

func start(t *testing.T, cfg Config) *Trainer {
	t.Helper()
	tr, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

var fitConfig = fl.FitConfig{Epochs: 1, BatchSize: 10, LR: 0.1}

func TestHandshakeInitFitEvaluate(t *testing.T) {
	tr := start(t, fake(t, "ok"))
	if got := tr.Layout(); got.Size() != 8 || len(got) != 2 || got[0].Name != "w" || tr.Name() != "fake" {
		t.Fatalf("layout %+v, name %q", got, tr.Name())
	}
	ctx := context.Background()
	init, err := tr.InitialParams(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	if init[5] != 5 {
		t.Fatalf("initial params %v", init)
	}
	c := &Client{Trainer: tr, ID: 3, Train: Data{Indices: []int{4, 5, 6}}, Test: Data{Indices: []int{1, 2}}}
	res, err := c.Fit(ctx, fl.FitIns{Round: 1, Params: init, Config: fitConfig})
	if err != nil {
		t.Fatal(err)
	}
	if res.NumExamples != 3 || res.Loss != 0.25 || len(res.Update) != 8 {
		t.Fatalf("fit result %+v", res)
	}
	for i, u := range res.Update {
		if u != 0.5 {
			t.Fatalf("update[%d] = %v, want 0.5 (new params − global)", i, u)
		}
	}
	if init[5] != 5 {
		t.Fatal("Fit modified the global parameters")
	}
	ev, err := c.Evaluate(ctx, init)
	if err != nil {
		t.Fatal(err)
	}
	if ev.NumExamples != 2 || ev.Accuracy != 0.75 || ev.Loss != 28 {
		t.Fatalf("evaluate %+v", ev)
	}
	all, err := (&Client{Trainer: tr, Train: Data{All: true}, Test: Data{All: true}}).Fit(ctx, fl.FitIns{Round: 1, Params: init, Config: fitConfig})
	if err != nil || all.NumExamples != 100 {
		t.Fatalf("fit on all local data: %+v, %v", all, err)
	}
	if ev, err := (&Client{Trainer: tr}).Evaluate(ctx, init); err != nil || ev.NumExamples != 0 {
		t.Fatalf("a client without test data: %+v, %v", ev, err)
	}
}

func TestUpdateKind(t *testing.T) {
	tr := start(t, fake(t, "update"))
	res, err := (&Client{Trainer: tr, Train: Data{All: true}}).Fit(context.Background(),
		fl.FitIns{Round: 1, Params: make([]float32, 8), Config: fitConfig})
	if err != nil || res.Update[0] != 0.5 {
		t.Fatalf("%+v, %v", res, err)
	}
}

// Clipping and local noise happen in Go, on what the trainer returned.
func TestFitIsClippedAndNoisedInGo(t *testing.T) {
	tr := start(t, fake(t, "ok"))
	cfg := fitConfig
	cfg.ClipNorm = 0.1
	c := &Client{Trainer: tr, Train: Data{All: true}}
	res, err := c.Fit(context.Background(), fl.FitIns{Round: 1, Params: make([]float32, 8), Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if n := norm(res.Update); math.Abs(n-0.1) > 1e-6 || res.Unclipped != 0 {
		t.Fatalf("clipped norm %v (want 0.1), unclipped %v", n, res.Unclipped)
	}
	cfg.LocalNoiseStd = 1
	c.NoiseSource = privacy.NewSeededSource(1)
	noisy, err := c.Fit(context.Background(), fl.FitIns{Round: 1, Params: make([]float32, 8), Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if n := norm(noisy.Update); math.Abs(n-0.1) < 1e-3 {
		t.Fatalf("local noise was not added: norm %v", n)
	}
	cfg.LocalNoiseStd, cfg.PerLayerClip = 0, true
	per, err := c.Fit(context.Background(), fl.FitIns{Round: 1, Params: make([]float32, 8), Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	// Layers are the layout's tensors (6 and 2 values): clips 0.1·√(6/8) and 0.1·√(2/8).
	if n := norm(per.Update[:6]); math.Abs(n-0.1*math.Sqrt(6.0/8)) > 1e-6 {
		t.Fatalf("per-layer clip of tensor w: norm %v", n)
	}
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func TestWrongVersionIsRefused(t *testing.T) {
	_, err := Start(context.Background(), fake(t, "version"))
	if err == nil || !strings.Contains(err.Error(), "protocol version 2, this shoal speaks version 1") {
		t.Fatalf("got %v", err)
	}
}

func TestCommandThatDoesNotStart(t *testing.T) {
	_, err := Start(context.Background(), Config{Command: "/nonexistent/trainer --flag", Stderr: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/trainer") || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("got %v", err)
	}
	_, err = Start(context.Background(), fake(t, "exit-at-start"))
	if err == nil || !strings.Contains(err.Error(), "cannot import torch") || !strings.Contains(err.Error(), "exit status 2") {
		t.Fatalf("got %v", err)
	}
}

func TestStdoutNoiseIsAProtocolViolation(t *testing.T) {
	_, err := Start(context.Background(), fake(t, "stdout-noise"))
	if err == nil || !strings.Contains(err.Error(), "print logs to stderr") {
		t.Fatalf("got %v", err)
	}
}

func TestWrongLayoutAndNaNAreRejected(t *testing.T) {
	for mode, want := range map[string]string{"wrong-layout": "fit returned 7 parameters, the layout has 8", "nan": "parameter 3 is NaN"} {
		tr := start(t, fake(t, mode))
		_, err := (&Client{Trainer: tr, Train: Data{All: true}}).Fit(context.Background(),
			fl.FitIns{Round: 1, Params: make([]float32, 8), Config: fitConfig})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: got %v, want %q", mode, err, want)
		}
		if mode == "nan" && !errors.Is(err, fl.ErrBadUpdate) {
			t.Fatalf("NaN update: %v is not ErrBadUpdate", err)
		}
	}
}

// A trainer (malicious or buggy) returns a huge update and claims a million examples to weigh
// more: under DP the Go side clips what leaves the client, and the weight is the unit weight
// whatever the trainer claims (without DP a count is the client's word, as on the wire).
func TestAttackTrainerInflatesUpdateAndWeight(t *testing.T) {
	tr := start(t, fake(t, "inflate"))
	cfg := fitConfig
	cfg.ClipNorm, cfg.UnitWeights = 0.1, true
	c := &Client{Trainer: tr, Train: Data{Indices: []int{1, 2, 3}}}
	res, err := c.Fit(context.Background(), fl.FitIns{Round: 1, Params: make([]float32, 8), Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if n := norm(res.Update); n > 0.1+1e-6 {
		t.Fatalf("the trainer's update left the client unclipped: norm %v, clip 0.1", n)
	}
	if w := cfg.Weight(res.NumExamples); res.NumExamples != 1_000_000 || w != 1 {
		t.Fatalf("claimed %d examples weigh %v under DP, want 1", res.NumExamples, w)
	}
}

func TestTrainerErrorFailsOnlyTheTask(t *testing.T) {
	tr := start(t, fake(t, "error-fit"))
	c := &Client{Trainer: tr, Train: Data{All: true}, Test: Data{All: true}}
	_, err := c.Fit(context.Background(), fl.FitIns{Round: 1, Params: make([]float32, 8), Config: fitConfig})
	var te *Error
	if !errors.As(err, &te) || te.Message != "CUDA out of memory" {
		t.Fatalf("got %v", err)
	}
	if _, err := c.Evaluate(context.Background(), make([]float32, 8)); err != nil || tr.Restarts() != 0 {
		t.Fatalf("after a trainer error: %v, %d restarts", err, tr.Restarts())
	}
}

func TestHungTrainerIsKilledAtTheDeadlineAndRestarted(t *testing.T) {
	cfg := fake(t, "hang-fit")
	cfg.CallTimeout = 300 * time.Millisecond
	tr := start(t, cfg)
	c := &Client{Trainer: tr, Train: Data{All: true}, Test: Data{All: true}}
	begin := time.Now()
	_, err := c.Fit(context.Background(), fl.FitIns{Round: 1, Params: make([]float32, 8), Config: fitConfig})
	if err == nil || !strings.Contains(err.Error(), "killed") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("the hung fit took %v to fail", d)
	}
	// The next task restarts the child.
	if _, err := c.Evaluate(context.Background(), make([]float32, 8)); err != nil || tr.Restarts() != 1 {
		t.Fatalf("after the kill: %v, %d restarts", err, tr.Restarts())
	}
	// The caller's own deadline works too.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	tr.cfg.CallTimeout = 0
	if _, err := c.Fit(ctx, fl.FitIns{Round: 2, Params: make([]float32, 8), Config: fitConfig}); err == nil {
		t.Fatal("a hung fit under the caller's deadline succeeded")
	}
}

func TestCrashedTrainerIsRestarted(t *testing.T) {
	mark := filepath.Join(t.TempDir(), "crashed")
	tr := start(t, fake(t, "crash-once", "SHOAL_FAKE_MARK="+mark))
	c := &Client{Trainer: tr, Train: Data{All: true}}
	ins := fl.FitIns{Round: 1, Params: make([]float32, 8), Config: fitConfig}
	_, err := c.Fit(context.Background(), ins)
	if err == nil || !strings.Contains(err.Error(), "segfault in fit") || !strings.Contains(err.Error(), "exit status 139") {
		t.Fatalf("crash: got %v", err)
	}
	res, err := c.Fit(context.Background(), ins)
	if err != nil || res.Update[0] != 0.5 || tr.Restarts() != 1 {
		t.Fatalf("after the restart: %+v, %v, %d restarts", res, err, tr.Restarts())
	}
}

func TestCrashingTrainerFailsEveryTask(t *testing.T) {
	tr := start(t, fake(t, "crash-fit"))
	c := &Client{Trainer: tr, Train: Data{All: true}}
	for range 2 {
		if _, err := c.Fit(context.Background(), fl.FitIns{Round: 1, Params: make([]float32, 8), Config: fitConfig}); err == nil {
			t.Fatal("a crashing trainer's fit succeeded")
		}
	}
}

func TestLayoutValidation(t *testing.T) {
	for _, l := range []Layout{
		nil,
		{{Name: "", Shape: []int{1}, DType: "float32"}},
		{{Name: "a", Shape: []int{1}, DType: "float64"}},
		{{Name: "a", Shape: []int{0}, DType: "float32"}},
		{{Name: "a", Shape: []int{1}, DType: "float32"}, {Name: "a", Shape: []int{1}, DType: "float32"}},
		{{Name: "a", Shape: []int{1 << 20, 1 << 20}, DType: "float32"}},
	} {
		if l.validate() == nil {
			t.Errorf("layout %+v accepted", l)
		}
	}
}
