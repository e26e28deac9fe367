package data

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	d := &Dataset{Name: "d", Dim: 1, C: 1, H: 1, W: 1, Classes: 2}
	for i := range 100 {
		d.X = append(d.X, float32(i))
		d.Y = append(d.Y, int32(i%2))
	}
	train, test, err := d.Split(0.2, 1)
	if err != nil {
		t.Fatal(err)
	}
	if train.Len() != 80 || test.Len() != 20 {
		t.Fatalf("split sizes %d/%d, want 80/20", train.Len(), test.Len())
	}
	seen := map[float32]bool{}
	for _, part := range []*Dataset{train, test} {
		for i := range part.Len() {
			v := part.X[i]
			if seen[v] || part.Y[i] != int32(v)%2 {
				t.Fatalf("example %v duplicated or label mismatched", v)
			}
			seen[v] = true
		}
	}
	again, _, _ := d.Split(0.2, 1)
	other, _, _ := d.Split(0.2, 2)
	if !slices.Equal(train.X, again.X) || slices.Equal(train.X, other.X) {
		t.Error("Split is not deterministic per seed")
	}
	for _, f := range []float64{0, 1, -0.5, math.NaN()} {
		if _, _, err := d.Split(f, 1); err == nil || !strings.Contains(err.Error(), "test fraction") {
			t.Errorf("Split(%v): error %v", f, err)
		}
	}
}

func TestStandardize(t *testing.T) {
	train := &Dataset{Name: "tr", X: []float32{1, 5, 3, 5, 5, 5}, Y: []int32{0, 0, 0}, Dim: 2, C: 1, H: 1, W: 2, Classes: 1}
	test := &Dataset{Name: "te", X: []float32{7, 6}, Y: []int32{0}, Dim: 2, C: 1, H: 1, W: 2, Classes: 1}
	mean, scale, err := Standardize(train, test)
	if err != nil {
		t.Fatal(err)
	}
	// Feature 0: values 1,3,5 → mean 3, sd √(8/3); feature 1 constant 5 → only centred.
	sd := float32(math.Sqrt(8.0 / 3))
	if mean[0] != 3 || mean[1] != 5 || math.Abs(float64(scale[0]-1/sd)) > 1e-6 || scale[1] != 1 {
		t.Fatalf("mean %v scale %v", mean, scale)
	}
	if math.Abs(float64(test.X[0]-4/sd)) > 1e-5 || test.X[1] != 1 {
		t.Errorf("test set standardized to %v, want training statistics applied", test.X)
	}
	if train.X[1] != 0 || math.Abs(float64(train.X[0]+2/sd)) > 1e-5 {
		t.Errorf("training set standardized to %v", train.X)
	}
}
