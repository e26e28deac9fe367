package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"shoal/data"
	"shoal/report"
	"shoal/trainer/process"
)

// testPython is the interpreter of the Python trainer tests: Debian's python3, which sees
// Debian's python3-numpy (CI installs it; a pyenv python3 on PATH may not), or $SHOAL_PYTHON.
func testPython(t *testing.T) string {
	t.Helper()
	py := os.Getenv("SHOAL_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	if out, err := exec.Command(py, "-c", "import numpy").CombinedOutput(); err != nil {
		t.Fatalf("%s cannot import numpy (apt-get install -y python3-numpy, or set SHOAL_PYTHON): %v\n%s", py, err, out)
	}
	return py
}

// numpyTrainer is the command line of examples/numpy-logreg on the GoMNIST IDX files.
func numpyTrainer(t *testing.T) string {
	t.Helper()
	dir, err := data.MNISTDir()
	if err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs("../../examples/numpy-logreg/trainer.py")
	if err != nil {
		t.Fatal(err)
	}
	return testPython(t) + " " + script + " --data-dir " + dir
}

func simulateSummary(t *testing.T, args ...string) simSummary {
	t.Helper()
	args = append([]string{"simulate", "--dataset", "mnist", "--clients", "100", "--fraction", "0.1", "--target-accuracy", "0",
		"--batch-size", "10", "--lr", "0.05", "--seed", "1", "--workers", "2", "--json", "--out", t.TempDir()}, args...)
	code, stdout, stderr := shoal(t, args...)
	if code != 0 {
		t.Fatalf("shoal %s: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
	var s simSummary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("summary: %v\n%s", err, stdout)
	}
	return s
}

// The NumPy logistic regression under `simulate --trainer` follows the accuracy trajectory of the
// built-in logreg on the same partition and cohorts (same model, same SGD; the initial weights
// and shuffles come from different generators, hence a tolerance).
func TestSimulateTrainerMatchesInProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: trains MNIST twice")
	}
	const rounds = "4"
	ext := simulateSummary(t, "--rounds", rounds, "--trainer", numpyTrainer(t))
	in := simulateSummary(t, "--rounds", rounds, "--model", "logreg")
	if len(ext.History) != 4 || len(in.History) != 4 {
		t.Fatalf("rounds: %d external, %d in-process", len(ext.History), len(in.History))
	}
	for i := range ext.History {
		a, b := ext.History[i].Accuracy, in.History[i].Accuracy
		t.Logf("round %d: external %.4f, in-process %.4f", i+1, a, b)
		if math.Abs(a-b) > 0.02 || ext.History[i].Participants != 10 {
			t.Fatalf("round %d: external trainer accuracy %.4f (%d participants), in-process %.4f", i+1, a,
				ext.History[i].Participants, b)
		}
	}
	if ext.FinalAccuracy < 0.85 {
		t.Fatalf("external trainer reached only %.4f", ext.FinalAccuracy)
	}
}

// The privacy stack stays in Go around an external trainer: secure aggregation and central DP
// (calibrated to the trainer's model size) run as with the built-in model.
func TestSimulateTrainerUnderSecAggAndDP(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	s := simulateSummary(t, "--rounds", "2", "--trainer", numpyTrainer(t), "--secure-sum", "secagg",
		"--dp", "central", "--sampling", "poisson", "--clip", "2", "--noise-multiplier", "0.3")
	if s.RoundsRun != 2 || s.FinalAccuracy < 0.5 || s.Epsilon == nil || !(*s.Epsilon > 0) {
		t.Fatalf("summary %+v", s)
	}
}

func TestTrainerThatDoesNotStartIsAStartupError(t *testing.T) {
	code, _, stderr := shoal(t, "simulate", "--dataset", "synthetic", "--clients", "4", "--rounds", "1",
		"--out", t.TempDir(), "--trainer", "/nonexistent/my-trainer --epochs 3")
	if code == 0 || !strings.Contains(stderr, "--trainer") || !strings.Contains(stderr, "/nonexistent/my-trainer") ||
		!strings.Contains(stderr, "not found") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}

// The description of an external trainer's model lays its tensors out in handshake order.
func TestTrainerModelLayout(t *testing.T) {
	info := trainerModel("fake", process.Layout{{Name: "w", Shape: []int{3, 2}, DType: "float32"},
		{Name: "b", Shape: []int{2}, DType: "float32"}}, "mnist")
	if info.Arch != "external" || info.Trainer != "fake" || len(info.Tensors) != 2 || info.Tensors[0].Name != "w" ||
		info.Tensors[0].Offset != 0 || fmt.Sprint(info.Tensors[0].Shape) != "[3 2]" ||
		info.Tensors[1].Name != "b" || info.Tensors[1].Offset != 6 {
		t.Fatalf("description: %+v", info)
	}
	m := &report.Model{Info: info, Params: []float32{0, 1, 2, 3, 4, 5, 6, 7}}
	if err := m.Check(); err != nil {
		t.Fatal(err)
	}
	if b := m.Tensor(info.Tensors[1]); len(b) != 2 || b[0] != 6 {
		t.Fatalf("tensor b: %v", b)
	}
}

// A run with --trainer writes the trainer's layout into model.bin and a model.safetensors with
// the trainer's tensor names (issue 13, item 5); ONNX and predict, which need a graph Shoal
// knows, refuse it with a reason.
func TestSimulateTrainerModelFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	out := filepath.Join(t.TempDir(), "run")
	args := []string{"simulate", "--dataset", "mnist", "--clients", "100", "--fraction", "0.05", "--rounds", "1",
		"--target-accuracy", "0", "--seed", "1", "--workers", "1", "--out", out, "--trainer", numpyTrainer(t)}
	if code, _, stderr := shoal(t, args...); code != 0 {
		t.Fatalf("shoal %s: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
	saved, err := report.ReadModelFile(filepath.Join(out, "model.bin"))
	if err != nil {
		t.Fatal(err)
	}
	ts := saved.Info.Tensors
	if saved.Info.Trainer != "numpy-logreg" || saved.Info.Arch != "external" || len(ts) != 2 ||
		ts[0].Name != "w" || fmt.Sprint(ts[0].Shape) != "[784 10]" || ts[1].Name != "b" || fmt.Sprint(ts[1].Shape) != "[10]" ||
		len(saved.Params) != 7850 {
		t.Fatalf("model.bin of a --trainer run: %+v, %d parameters", saved.Info, len(saved.Params))
	}
	f, err := os.Open(filepath.Join(out, "model.safetensors"))
	if err != nil {
		t.Fatalf("no model.safetensors for a --trainer run: %v", err)
	}
	defer f.Close()
	tensors, shapes, meta, err := report.ReadSafetensors(f)
	if err != nil {
		t.Fatal(err)
	}
	if meta["trainer"] != "numpy-logreg" || len(tensors) != 2 || fmt.Sprint(shapes["w"]) != "[784 10]" {
		t.Fatalf("model.safetensors: shapes %v, metadata %v", shapes, meta)
	}
	for _, tn := range ts {
		if !slices.Equal(tensors[tn.Name], saved.Tensor(tn)) {
			t.Fatalf("tensor %s differs between model.safetensors and model.bin", tn.Name)
		}
	}
	if code, _, stderr := shoal(t, "export", "--format", "onnx", "--model", filepath.Join(out, "model.bin"),
		"--out", filepath.Join(t.TempDir(), "m.onnx")); code == 0 || !strings.Contains(stderr, "external trainer") {
		t.Fatalf("onnx export of a trainer's model: exit %d, %s", code, stderr)
	}
	if code, _, stderr := shoal(t, "predict", "--model", filepath.Join(out, "model.bin"), "--data", "mnist-test"); code == 0 ||
		!strings.Contains(stderr, "external trainer") {
		t.Fatalf("predict with a trainer's model: exit %d, %s", code, stderr)
	}
}
