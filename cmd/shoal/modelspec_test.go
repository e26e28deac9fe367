package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"shoal/data"
	"shoal/trainer"
	"shoal/transport/grpctransport"
)

// A client whose file holds a single class trains under the run's class list: its labels are
// renumbered to the server's, its model has the run's class count; a class the run does not
// know, or another architecture, is refused.
func TestLocalModelAdoptsRunClasses(t *testing.T) {
	train := &data.Dataset{Name: "one", X: []float32{1, 2, 3, 4}, Y: []int32{0, 0}, Dim: 2, C: 1, H: 1, W: 2,
		Classes: 1, ClassNames: []string{"malignant"}}
	l, err := newLocalModel("logreg", 1, train, train.X, train.Y, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.local(1, 0); err == nil {
		t.Fatal("a single-class client trained before it knew the run's classes")
	}
	run := grpctransport.ModelSpec{Arch: "logreg", Input: [3]int{1, 1, 2}, LayerSizes: []int{9}, Classes: []string{"benign", "malignant", "other"}}
	if err := l.adopt(run); err != nil {
		t.Fatal(err)
	}
	c, err := l.local(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	tc := c.(*trainer.Client)
	if !slices.Equal(tc.Y, []int32{1, 1}) || tc.Model.Classes() != 3 {
		t.Fatalf("labels %v with %d classes, want [1 1] with 3", tc.Y, tc.Model.Classes())
	}
	for _, bad := range []grpctransport.ModelSpec{
		{Arch: "logreg", Input: [3]int{1, 1, 2}, LayerSizes: []int{6}, Classes: []string{"benign", "cat"}},
		{Arch: "2nn", Input: [3]int{1, 1, 2}, LayerSizes: []int{600, 40200, 402}, Classes: []string{"benign", "malignant"}},
		{Arch: "logreg", Input: [3]int{1, 1, 2}, LayerSizes: []int{7}, Classes: []string{"benign", "malignant"}},
	} {
		if err := l.adopt(bad); err == nil {
			t.Errorf("adopted %v", bad)
		}
	}
	if _, err := newLocalModel("resnet", 1, train, train.X, train.Y, nil, nil); err == nil || !strings.Contains(err.Error(), "valid:") {
		t.Fatalf("unknown model: %v", err)
	}
}

// A client with another model than the server's is refused at connect time: it exits non-zero
// naming both models, and the server logs the refusal (issue 13: before, every round was
// abandoned and both exited 0).
func TestClientWithOtherModelRefusedAtConnect(t *testing.T) {
	addr := freeAddr(t)
	srv := startProc(t, "server", append([]string{"server", "--insecure", "--listen", addr, "--out", filepath.Join(t.TempDir(), "run"),
		"--min-clients", "1", "--rounds", "1"}, trainingArgs(2)...)...)
	srv.waitFor("listening on", 60*time.Second)
	c := startProc(t, "client", append([]string{"client", "--server", addr, "--name", "c1", "--insecure", "--partition-index", "0",
		"--max-backoff", "300ms"}, append(trainingArgs(2), "--model", "2nn")...)...)
	err := c.wait(60 * time.Second)
	var exit interface{ ExitCode() int }
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("client exited with %v, want a non-zero exit", err)
	}
	if log := c.log(); !strings.Contains(log, `"2nn"`) || !strings.Contains(log, `"logreg"`) {
		t.Fatalf("client's error does not name both models:\n%s", log)
	}
	srv.waitFor("client refused", 10*time.Second)
}

// A server whose every round was abandoned (here: a learning rate that makes every client's
// training diverge) exits non-zero with the reason instead of reporting an untrained model as
// a success.
func TestServerAllRoundsAbandonedFails(t *testing.T) {
	addr := freeAddr(t)
	srv := startProc(t, "server", append([]string{"server", "--insecure", "--listen", addr, "--out", filepath.Join(t.TempDir(), "run"),
		"--min-clients", "2", "--rounds", "2", "--fraction", "1"}, trainingArgs(2, "--lr", "1e38", "--target-accuracy", "0")...)...)
	startClients(t, addr, "", 2)
	err := srv.wait(90 * time.Second)
	var exit interface{ ExitCode() int }
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("server exited with %v, want a non-zero exit", err)
	}
	if log := srv.log(); !strings.Contains(log, "every round was abandoned") {
		t.Fatalf("server did not say why:\n%s", log)
	}
}

// --target-accuracy defaults to the dataset's target (0.975 for mnist, 0 for a CSV), in any
// order of the flags and from a --config file, and an explicit value always wins.
func TestTargetAccuracyDefaultsByDataset(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(cfg, []byte("dataset = \"csv\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want float64
	}{
		{nil, 0.975},
		{[]string{"--dataset", "csv"}, 0},
		{[]string{"--dataset", "synthetic"}, 0},
		{[]string{"--target-accuracy", "0.9", "--dataset", "csv"}, 0.9},
		{[]string{"--dataset", "csv", "--target-accuracy", "0.8"}, 0.8},
		{[]string{"--config", cfg}, 0},
		{[]string{"--config", cfg, "--target-accuracy", "0.7"}, 0.7},
	} {
		var o simOptions
		var stderr strings.Builder
		if err := parseWithConfig(simulateFlags(&o, &stderr), tc.args); err != nil {
			t.Fatal(err)
		}
		if o.TargetAccuracy != tc.want {
			t.Errorf("%q: target %v, want %v", tc.args, o.TargetAccuracy, tc.want)
		}
	}
	var help strings.Builder
	simulateFlags(&simOptions{}, &help).PrintDefaults()
	if strings.Contains(help.String(), "panic") || !strings.Contains(help.String(), "0.975 for mnist") {
		t.Fatalf("help:\n%s", help.String())
	}
}

// writeTabularCSV writes a breast-cancer-like table: n rows of 30 features on scales from
// 10⁻³ to 10³ (offset far from 0), two classes separated along a direction that mixes them.
func writeTabularCSV(t *testing.T, n int, seed uint64) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	var b strings.Builder
	for j := range 30 {
		fmt.Fprintf(&b, "f%d,", j)
	}
	b.WriteString("target\n")
	for range n {
		class := rng.IntN(2)
		for j := range 30 {
			scale := math.Pow(10, float64(j%7-3))
			v := rng.NormFloat64() + 1.5*float64(class)*float64(j%3) // features 1, 2 mod 3 carry the class
			fmt.Fprintf(&b, "%g,", (v+5)*scale)
		}
		fmt.Fprintf(&b, "%s\n", []string{"benign", "malignant"}[class])
	}
	path := filepath.Join(t.TempDir(), "tabular.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// The first-day tabular path works by default: standardised features, no MNIST target, the
// scaling stored with the model (issue 13, item 3). Without standardisation the same run does
// much worse, which is what the default fixes.
func TestTabularCSVWorksByDefault(t *testing.T) {
	csv := writeTabularCSV(t, 569, 7)
	run := func(extra ...string) simSummary {
		t.Helper()
		out := filepath.Join(t.TempDir(), "run")
		args := append([]string{"simulate", "--dataset", "csv", "--data", csv, "--label-column", "target", "--model", "logreg",
			"--clients", "10", "--fraction", "0.5", "--rounds", "15", "--seed", "3", "--json", "--out", out}, extra...)
		code, stdout, stderr := shoal(t, args...)
		if code != 0 {
			t.Fatalf("simulate %q: exit %d\n%s", extra, code, stderr)
		}
		return decodeSummary(t, []byte(stdout))
	}
	s := run()
	if s.RoundsRun != 15 || s.FinalAccuracy < 0.95 {
		t.Fatalf("standardised: %d rounds, final accuracy %.4f; want all 15 rounds (no MNIST target) and ≥ 0.95", s.RoundsRun, s.FinalAccuracy)
	}
	raw := run("--standardize=false")
	if raw.FinalAccuracy > s.FinalAccuracy-0.1 {
		t.Fatalf("raw features reach %.4f, standardised %.4f: the test data does not need scaling", raw.FinalAccuracy, s.FinalAccuracy)
	}
}

func TestWarnExplodingLoss(t *testing.T) {
	var logs strings.Builder
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	losses := []float64{0.7, 1e8, math.NaN()}
	i := 0
	eval := warnExplodingLoss(func([]float32) (float64, float64, error) { i++; return losses[i-1], 0.5, nil }, 2, logger)
	for range losses {
		if _, _, err := eval(nil); err != nil {
			t.Fatal(err)
		}
		if i == 1 && logs.Len() > 0 {
			t.Fatalf("warned on a sane loss: %s", logs.String())
		}
	}
	if n := strings.Count(logs.String(), "exploding"); n != 1 {
		t.Fatalf("%d warnings, want exactly one:\n%s", n, logs.String())
	}
}
