package strategy

import (
	"slices"
	"testing"

	"shoal/fl"
)

// A stateful server optimiser saved after round 1 and restored into a fresh instance continues
// exactly as the original does.
func TestStatefulStrategiesResumeExactly(t *testing.T) {
	for _, name := range []string{"fedavgm", "fedadam", "fedyogi", "fedadagrad"} {
		a, _ := New(name, nil)
		g1 := []float32{1, 2}
		_ = a.AggregateFit(1, g1, aggregate())
		state, err := a.(fl.Stateful).SaveState()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := New(name, nil)
		if err := b.(fl.Stateful).RestoreState(state); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		g2 := slices.Clone(g1)
		_ = a.AggregateFit(2, g1, aggregate())
		_ = b.AggregateFit(2, g2, aggregate())
		if !slices.Equal(g1, g2) {
			t.Fatalf("%s: resumed %v, original %v", name, g2, g1)
		}
		other, _ := New("fedavgm", nil)
		if name != "fedavgm" {
			if err := other.(fl.Stateful).RestoreState(state); err == nil {
				t.Fatalf("fedavgm accepted %s's state", name)
			}
		}
		for _, cut := range []int{0, 5, len(state) - 1} {
			if err := b.(fl.Stateful).RestoreState(state[:cut]); err == nil {
				t.Fatalf("%s: truncated state (%d bytes) accepted", name, cut)
			}
		}
	}
	// A strategy that has not run yet round-trips its empty state.
	s, _ := New("fedadam", nil)
	st, _ := s.(fl.Stateful).SaveState()
	if err := s.(fl.Stateful).RestoreState(st); err != nil {
		t.Fatal(err)
	}
	var _ fl.Strategy = s
}

func FuzzDecodeState(f *testing.F) {
	f.Add(encodeState("fedadam", []float64{1, 2}, []float64{3, 4}))
	f.Add([]byte(stateMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeState("fedadam", 2, b)
		if err == nil && string(encodeState("fedadam", v...)) != string(b) {
			t.Fatal("state does not round-trip")
		}
	})
}
