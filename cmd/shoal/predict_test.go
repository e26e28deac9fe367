package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"shoal/data"
	"shoal/report"
)

// A model trained by simulate on MNIST: shoal predict on mnist-test gives the run's final
// test accuracy exactly, and the exported ONNX graph predicts what shoal predict prints.
func TestPredictMNISTMatchesRunAndONNX(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	code, stdout, stderr := shoal(t, "simulate", "--model", "logreg", "--clients", "20", "--fraction", "0.1", "--rounds", "1",
		"--seed", "4", "--json", "--out", out)
	if code != 0 {
		t.Fatalf("simulate: %s", stderr)
	}
	s := decodeSummary(t, []byte(stdout))
	model := filepath.Join(out, "model.bin")
	code, stdout, stderr = shoal(t, "predict", "--model", model, "--data", "mnist-test")
	if want := fmt.Sprintf("accuracy %.4f (", s.FinalAccuracy); code != 0 || !strings.HasPrefix(stdout, want) {
		t.Fatalf("predict: exit %d, %q (%s), want %q…", code, stdout, stderr, want)
	}
	code, stdout, _ = shoal(t, "predict", "--model", model, "--data", "mnist-test", "--predictions")
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != 0 || len(lines) != 10001 {
		t.Fatalf("predictions: exit %d, %d lines", code, len(lines))
	}
	m, err := report.ReadModelFile(model)
	if err != nil {
		t.Fatal(err)
	}
	test, err := data.LoadMNISTTest("")
	if err != nil {
		t.Fatal(err)
	}
	w := &bytesBuffer{}
	if err := report.WriteONNX(w, m); err != nil {
		t.Fatal(err)
	}
	got := onnxPredict(t, w.b, test.X)
	for i, p := range got {
		if m.Info.Classes[p] != lines[i] {
			t.Fatalf("example %d: ONNX predicts %s, shoal predict %s", i, m.Info.Classes[p], lines[i])
		}
	}
}

type bytesBuffer struct{ b []byte }

func (w *bytesBuffer) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

// A CSV without the label column gets one predicted class per row; the stored scaling is
// applied (the model was trained on standardised data, the file is raw).
func TestPredictUnlabelledCSV(t *testing.T) {
	csv := writeTabularCSV(t, 300, 5)
	out := filepath.Join(t.TempDir(), "run")
	if code, _, stderr := shoal(t, "simulate", "--dataset", "csv", "--data", csv, "--label-column", "target", "--model", "logreg",
		"--clients", "5", "--fraction", "1", "--rounds", "10", "--seed", "2", "--out", out); code != 0 {
		t.Fatalf("simulate: %s", stderr)
	}
	model := filepath.Join(out, "model.bin")
	code, stdout, stderr := shoal(t, "predict", "--model", model, "--data", csv, "--label-column", "target")
	var acc float64
	if _, err := fmt.Sscanf(stdout, "accuracy %g", &acc); code != 0 || err != nil || acc < 0.95 {
		t.Fatalf("labelled: exit %d, %q %s", code, stdout, stderr)
	}
	raw, err := os.ReadFile(csv)
	if err != nil {
		t.Fatal(err)
	}
	var features, labels []string
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		i := strings.LastIndex(line, ",")
		features, labels = append(features, line[:i]), append(labels, line[i+1:])
	}
	unlabelled := filepath.Join(t.TempDir(), "x.csv")
	if err := os.WriteFile(unlabelled, []byte(strings.Join(features, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = shoal(t, "predict", "--model", model, "--data", unlabelled)
	preds := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != 0 || len(preds) != 300 {
		t.Fatalf("unlabelled: exit %d, %d lines, %s", code, len(preds), stderr)
	}
	agree := 0
	for i, p := range preds {
		if p == labels[i+1] {
			agree++
		}
	}
	if float64(agree)/300 < 0.95 {
		t.Fatalf("unlabelled predictions agree with the labels on %d of 300", agree)
	}
	if code, _, stderr := shoal(t, "predict", "--model", model, "--data", "mnist-test"); code == 0 || !strings.Contains(stderr, "784 features, the model takes 30") {
		t.Fatalf("mismatched data: exit %d, %s", code, stderr)
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := shoal(t, "version")
	if code != 0 || !strings.HasPrefix(stdout, "shoal ") || !strings.Contains(stdout, "\ngo go1.") {
		t.Fatalf("version: exit %d, %q", code, stdout)
	}
	info := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "shoal", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "CGO_ENABLED", Value: "0"}}}
	want := "shoal v1.2.3 (module shoal)\ngo go1.26.0\nvcs.revision=abc123\nCGO_ENABLED=0\n"
	if got := formatVersion(info); got != want || !slices.Contains(strings.Split(got, "\n"), "CGO_ENABLED=0") {
		t.Fatalf("formatVersion: %q, want %q", got, want)
	}
}

// A saved model with NaN weights (or a feature scaled to Inf) yields NaN logits; the predicted
// class must still be a valid index, not slices.Index(row, NaN) = -1.
func TestArgmaxesWithNaN(t *testing.T) {
	nan := float32(math.NaN())
	got := argmaxes([]float32{nan, nan, 1, nan, 2, 0, nan, 3, nan}, 3)
	if !slices.Equal(got, []int{2, 1, 1}) {
		t.Fatalf("argmaxes = %v", got)
	}
	for _, p := range argmaxes([]float32{nan, nan}, 2) {
		if p < 0 || p > 1 {
			t.Fatalf("all-NaN row predicted class %d", p)
		}
	}
}
