package data

import (
	"errors"
	"fmt"
	"math"
)

// streamSplit keeps Split's shuffle independent of partitions drawn from the same seed.
const streamSplit uint64 = 0x5348_4f41_4c53_504c // "SHOALSPL"

// Subset returns a new dataset holding copies of the examples idx, in that order.
func (d *Dataset) Subset(name string, idx []int) *Dataset {
	x, y := d.Gather(idx, nil, nil)
	s := *d
	s.Name, s.X, s.Y = name, x, y
	return &s
}

// Split shuffles the examples (deterministically for seed) and holds out testFraction of them
// (rounded; at least one, and at least one left for training) as a test set, for data such as
// a single CSV file that comes without a held-out test set.
func (d *Dataset) Split(testFraction float64, seed uint64) (train, test *Dataset, err error) {
	if !(testFraction > 0 && testFraction < 1) {
		return nil, nil, fmt.Errorf("split %s: test fraction %v, want a value strictly between 0 and 1", d.Name, testFraction)
	}
	n := d.Len()
	if n < 2 {
		return nil, nil, fmt.Errorf("split %s: %d examples, need at least 2", d.Name, n)
	}
	nTest := min(max(int(math.Round(testFraction*float64(n))), 1), n-1)
	perm := newRand(seed, streamSplit).Perm(n)
	return d.Subset(d.Name+"-train", perm[nTest:]), d.Subset(d.Name+"-test", perm[:nTest]), nil
}

// Standardize rescales every feature of train to mean 0 and variance 1 and applies the same
// (training) statistics to the other datasets, so no test information leaks into training.
// Constant features are only centred. It returns the per-feature mean and scale used.
func Standardize(train *Dataset, others ...*Dataset) (mean, scale []float32, err error) {
	if train == nil || train.Len() == 0 {
		return nil, nil, errors.New("standardize: empty training set")
	}
	for _, o := range others {
		if o.Dim != train.Dim {
			return nil, nil, fmt.Errorf("standardize: %s has dimension %d, training set %s has %d", o.Name, o.Dim, train.Name, train.Dim)
		}
	}
	dim, n := train.Dim, train.Len()
	sum := make([]float64, dim)
	sq := make([]float64, dim)
	for i := range n {
		for j, v := range train.Row(i) {
			sum[j] += float64(v)
		}
	}
	mean = make([]float32, dim)
	for j := range sum {
		sum[j] /= float64(n)
		mean[j] = float32(sum[j])
	}
	for i := range n {
		for j, v := range train.Row(i) {
			dv := float64(v) - sum[j]
			sq[j] += dv * dv
		}
	}
	scale = make([]float32, dim)
	for j := range sq {
		sd := math.Sqrt(sq[j] / float64(n))
		scale[j] = 1
		if sd > 0 {
			scale[j] = float32(1 / sd)
		}
	}
	s := &Scaling{Mean: mean, Scale: scale}
	for _, d := range append([]*Dataset{train}, others...) {
		_ = s.Apply(d) // dimensions checked above
	}
	return mean, scale, nil
}
