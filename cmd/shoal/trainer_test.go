package main

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"shoal/data"
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
