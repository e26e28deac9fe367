package data

import (
	"errors"
	"fmt"
	"math"
)

// Dataset is a labelled dataset held as one row-major float32 matrix.
type Dataset struct {
	Name    string
	X       []float32 // Len()×Dim, row-major
	Y       []int32   // class labels in [0, Classes)
	Dim     int       // features per example (= C·H·W for images)
	C, H, W int       // image shape; C=1,H=1,W=Dim for tabular data
	Classes int
	// ClassNames, when non-nil, names each class (len == Classes); the CSV loader fills it with
	// the label values found in the file, in the order of their class numbers.
	ClassNames []string
}

// Len returns the number of examples.
func (d *Dataset) Len() int { return len(d.Y) }

// Row returns example i's features as a view into X (not a copy).
func (d *Dataset) Row(i int) []float32 { return d.X[i*d.Dim : (i+1)*d.Dim : (i+1)*d.Dim] }

// Gather copies the rows idx (and their labels) into x and y, growing them only when their
// capacity is too small, and returns them: call it with the previous batch's slices to reuse
// their memory. Indices must be in [0, Len()); an index outside that range is a programming
// error and panics like any out-of-range slice access.
func (d *Dataset) Gather(idx []int, x []float32, y []int32) ([]float32, []int32) {
	x = grow(x, len(idx)*d.Dim)
	y = grow(y, len(idx))
	dim := d.Dim
	for k, i := range idx {
		copy(x[k*dim:(k+1)*dim], d.X[i*dim:(i+1)*dim])
		y[k] = d.Y[i]
	}
	return x, y
}

// grow returns s resliced to length n, reallocating only when its capacity is too small.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// Validate checks that the sizes are consistent, every label lies in [0, Classes) and every
// feature value is finite.
func (d *Dataset) Validate() error {
	if d == nil {
		return errors.New("dataset is nil")
	}
	name := d.Name
	if name == "" {
		name = "dataset"
	}
	switch {
	case d.Dim < 1:
		return fmt.Errorf("%s: dimension %d, want at least 1", name, d.Dim)
	case d.C < 1 || d.H < 1 || d.W < 1 || d.C*d.H*d.W != d.Dim:
		return fmt.Errorf("%s: shape C×H×W = %d×%d×%d does not match dimension %d", name, d.C, d.H, d.W, d.Dim)
	case d.Classes < 1:
		return fmt.Errorf("%s: %d classes, want at least 1", name, d.Classes)
	case len(d.X) != len(d.Y)*d.Dim:
		return fmt.Errorf("%s: %d feature values for %d examples of dimension %d, want %d",
			name, len(d.X), len(d.Y), d.Dim, len(d.Y)*d.Dim)
	case d.ClassNames != nil && len(d.ClassNames) != d.Classes:
		return fmt.Errorf("%s: %d class names for %d classes", name, len(d.ClassNames), d.Classes)
	}
	for i, y := range d.Y {
		if y < 0 || int(y) >= d.Classes {
			return fmt.Errorf("%s: example %d has label %d, want 0 ≤ label < %d", name, i, y, d.Classes)
		}
	}
	for i, v := range d.X {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%s: example %d feature %d is %v, want a finite value", name, i/d.Dim, i%d.Dim, v)
		}
	}
	return nil
}

// LabelHistogram counts the labels of the examples idx (all examples when idx is nil) per class.
// Labels outside [0, classes) are not counted.
func LabelHistogram(labels []int32, classes int, idx []int) []int {
	counts := make([]int, max(classes, 0))
	count := func(y int32) {
		if y >= 0 && int(y) < classes {
			counts[y]++
		}
	}
	if idx == nil {
		for _, y := range labels {
			count(y)
		}
		return counts
	}
	for _, i := range idx {
		count(labels[i])
	}
	return counts
}

// Federated is a dataset split among clients: Clients[i] are the indices into Train of client i's
// examples (and TestClients[i], if non-nil, indices into Test for federated evaluation).
type Federated struct {
	Train, Test          *Dataset
	Clients, TestClients [][]int
	// Scaling is the feature standardisation applied to Train and Test (nil: none), to be
	// stored with the model and applied to any data it predicts on.
	Scaling *Scaling
}

// Scaling is a per-feature affine map x' = (x − Mean)·Scale, as Standardize computes it.
type Scaling struct {
	Mean  []float32 `json:"mean"`
	Scale []float32 `json:"scale"`
}

// Apply rescales every example of d in place (all of d.X, labelled or not); d must have
// len(Mean) features.
func (s *Scaling) Apply(d *Dataset) error {
	if len(s.Mean) != d.Dim || len(s.Scale) != d.Dim {
		return fmt.Errorf("scaling of %d features for %s, which has %d", len(s.Mean), d.Name, d.Dim)
	}
	for i, v := range d.X {
		j := i % d.Dim
		d.X[i] = (v - s.Mean[j]) * s.Scale[j]
	}
	return nil
}

// Validate checks both datasets and that the client index lists cover every example of Train
// (and of Test, when TestClients is set) exactly once.
func (f *Federated) Validate() error {
	if f == nil || f.Train == nil {
		return errors.New("federated dataset has no training set")
	}
	if err := f.Train.Validate(); err != nil {
		return fmt.Errorf("training set: %w", err)
	}
	if err := CheckPartition(f.Clients, f.Train.Len()); err != nil {
		return fmt.Errorf("training clients: %w", err)
	}
	if f.Test != nil {
		if err := f.Test.Validate(); err != nil {
			return fmt.Errorf("test set: %w", err)
		}
		if f.Test.Dim != f.Train.Dim || f.Test.Classes != f.Train.Classes {
			return fmt.Errorf("test set has dimension %d and %d classes, training set %d and %d",
				f.Test.Dim, f.Test.Classes, f.Train.Dim, f.Train.Classes)
		}
	}
	if f.TestClients != nil {
		if f.Test == nil {
			return errors.New("test clients given without a test set")
		}
		if len(f.TestClients) != len(f.Clients) {
			return fmt.Errorf("%d test clients for %d training clients", len(f.TestClients), len(f.Clients))
		}
		if err := CheckPartition(f.TestClients, f.Test.Len()); err != nil {
			return fmt.Errorf("test clients: %w", err)
		}
	}
	return nil
}

// CheckPartition reports an error unless parts assigns every index in [0, n) exactly once.
func CheckPartition(parts [][]int, n int) error {
	seen := make([]bool, n)
	total := 0
	for c, part := range parts {
		for _, i := range part {
			if i < 0 || i >= n {
				return fmt.Errorf("client %d has index %d, want 0 ≤ index < %d", c, i, n)
			}
			if seen[i] {
				return fmt.Errorf("index %d is assigned twice (again to client %d)", i, c)
			}
			seen[i] = true
		}
		total += len(part)
	}
	if total != n {
		return fmt.Errorf("%d of %d examples are assigned to no client", n-total, n)
	}
	return nil
}
