package data

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func tinyDataset() *Dataset {
	return &Dataset{
		Name: "tiny",
		X:    []float32{0, 1, 10, 11, 20, 21, 30, 31},
		Y:    []int32{0, 1, 2, 1},
		Dim:  2, C: 1, H: 1, W: 2, Classes: 3,
	}
}

func TestGather(t *testing.T) {
	d := tinyDataset()
	x, y := d.Gather([]int{3, 0, 3}, nil, nil)
	if want := []float32{30, 31, 0, 1, 30, 31}; !slices.Equal(x, want) {
		t.Errorf("x = %v, want %v", x, want)
	}
	if want := []int32{1, 0, 1}; !slices.Equal(y, want) {
		t.Errorf("y = %v, want %v", y, want)
	}
	// A smaller batch reuses the buffers instead of allocating.
	x2, y2 := d.Gather([]int{2}, x, y)
	if &x2[0] != &x[0] || &y2[0] != &y[0] {
		t.Error("Gather reallocated although the buffers were large enough")
	}
	if !slices.Equal(x2, []float32{20, 21}) || !slices.Equal(y2, []int32{2}) {
		t.Errorf("second batch = %v %v", x2, y2)
	}
	if allocs := testing.AllocsPerRun(100, func() { x, y = d.Gather([]int{1, 2, 3}, x, y) }); allocs != 0 {
		t.Errorf("Gather with big enough buffers allocates %v times", allocs)
	}
}

func TestValidate(t *testing.T) {
	if err := tinyDataset().Validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		breakF func(d *Dataset)
		want   string
	}{
		{"label too big", func(d *Dataset) { d.Y[2] = 3 }, "example 2 has label 3"},
		{"negative label", func(d *Dataset) { d.Y[0] = -1 }, "label -1"},
		{"nan", func(d *Dataset) { d.X[5] = float32(math.NaN()) }, "example 2 feature 1 is NaN"},
		{"inf", func(d *Dataset) { d.X[0] = float32(math.Inf(1)) }, "+Inf"},
		{"short X", func(d *Dataset) { d.X = d.X[:7] }, "7 feature values"},
		{"shape", func(d *Dataset) { d.W = 3 }, "does not match dimension"},
		{"no classes", func(d *Dataset) { d.Classes = 0 }, "0 classes"},
		{"class names", func(d *Dataset) { d.ClassNames = []string{"a"} }, "1 class names"},
	}
	for _, c := range cases {
		d := tinyDataset()
		c.breakF(d)
		if err := d.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate() = %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

func TestCheckPartition(t *testing.T) {
	if err := CheckPartition([][]int{{0, 2}, {1}}, 3); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		parts [][]int
		want  string
	}{
		{[][]int{{0, 1}, {1, 2}}, "assigned twice"},
		{[][]int{{0}, {2}}, "1 of 3 examples"},
		{[][]int{{0, 1, 3}}, "index 3"},
	} {
		if err := CheckPartition(c.parts, 3); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckPartition(%v) = %v, want an error containing %q", c.parts, err, c.want)
		}
	}
}

func TestFederatedValidate(t *testing.T) {
	d := tinyDataset()
	f := &Federated{Train: d, Test: d, Clients: [][]int{{0, 1}, {2, 3}}, TestClients: [][]int{{0}, {1, 2, 3}}}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	f.TestClients = [][]int{{0, 1, 2, 3}}
	if err := f.Validate(); err == nil || !strings.Contains(err.Error(), "1 test clients for 2") {
		t.Errorf("mismatched test clients: %v", err)
	}
}
