package data

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeScaledCSV writes n rows whose two features live on very different scales (around 1000
// and around 0.001), labelled by class.
func writeScaledCSV(t *testing.T, n int, classes ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("big,small,label\n")
	for i := range n {
		fmt.Fprintf(&b, "%d,%g,%s\n", 1000+i%7*100, 0.001*float64(i%5), classes[i%len(classes)])
	}
	path := filepath.Join(t.TempDir(), "scaled.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func meanStd(d *Dataset, j int) (mean, std float64) {
	for i := range d.Len() {
		mean += float64(d.Row(i)[j])
	}
	mean /= float64(d.Len())
	for i := range d.Len() {
		v := float64(d.Row(i)[j]) - mean
		std += v * v
	}
	return mean, math.Sqrt(std / float64(d.Len()))
}

// A CSV is standardised by default with the training split's statistics (recorded in Scaling
// and applied to the test split as they are); Raw keeps the values.
func TestCSVStandardisedByDefault(t *testing.T) {
	path := writeScaledCSV(t, 200, "a", "b")
	f, err := Load("csv", Source{Path: path, LabelColumn: "label", TestFraction: 0.25, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if f.Scaling == nil || len(f.Scaling.Mean) != 2 {
		t.Fatalf("scaling %+v", f.Scaling)
	}
	for j := range 2 {
		if m, s := meanStd(f.Train, j); math.Abs(m) > 1e-4 || math.Abs(s-1) > 1e-3 {
			t.Errorf("feature %d of the training split: mean %v, std %v", j, m, s)
		}
	}
	raw, err := Load("csv", Source{Path: path, LabelColumn: "label", TestFraction: 0.25, Seed: 3, Raw: true})
	if err != nil {
		t.Fatal(err)
	}
	if raw.Scaling != nil || raw.Test.Row(0)[0] < 1000 {
		t.Fatalf("raw: scaling %v, first value %v", raw.Scaling, raw.Test.Row(0)[0])
	}
	// The test split is rescaled with the training split's statistics, not its own.
	for i := range raw.Test.Len() {
		for j, v := range raw.Test.Row(i) {
			want := (v - f.Scaling.Mean[j]) * f.Scaling.Scale[j]
			if got := f.Test.Row(i)[j]; got != want {
				t.Fatalf("test example %d feature %d: %v, want %v", i, j, got, want)
			}
		}
	}
}

// A server (TestOnly) evaluates on the whole file: no split, so a test fraction of 0 is fine,
// and the scaling comes from the whole file.
func TestCSVTestOnlyIsWholeFile(t *testing.T) {
	path := writeScaledCSV(t, 50, "x", "y", "z")
	f, err := Load("csv", Source{Path: path, LabelColumn: "label", TestOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if f.Train != nil || f.Test.Len() != 50 || f.Test.Classes != 3 || f.Scaling == nil {
		t.Fatalf("test-only load: train %v, %d test examples, %d classes, scaling %v", f.Train, f.Test.Len(), f.Test.Classes, f.Scaling)
	}
	if _, err := Load("csv", Source{Path: path, LabelColumn: "label", TestFraction: 0}); err == nil {
		t.Fatal("a training load with test fraction 0 was accepted")
	}
}

func TestDefaultTargetAccuracy(t *testing.T) {
	if DefaultTargetAccuracy("mnist") != 0.975 || DefaultTargetAccuracy("csv") != 0 || DefaultTargetAccuracy("synthetic") != 0 {
		t.Fatalf("targets: mnist %v, csv %v, synthetic %v", DefaultTargetAccuracy("mnist"), DefaultTargetAccuracy("csv"), DefaultTargetAccuracy("synthetic"))
	}
}

func TestScalingApplyChecksDimension(t *testing.T) {
	s := &Scaling{Mean: []float32{1}, Scale: []float32{2}}
	d := &Dataset{Name: "d", X: []float32{3, 5}, Y: []int32{0, 1}, Dim: 1, C: 1, H: 1, W: 1, Classes: 2}
	if err := s.Apply(d); err != nil || d.X[0] != 4 || d.X[1] != 8 {
		t.Fatalf("apply: %v, %v", err, d.X)
	}
	d.Dim = 2
	if err := s.Apply(d); err == nil {
		t.Fatal("a scaling of 1 feature applied to 2")
	}
}
