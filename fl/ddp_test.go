package fl

import (
	"math"
	"testing"

	"shoal/privacy"
)

// TestDistributedDPAdaptiveClip: the server half moves the clip from the noised count it is
// given (no noise of its own), remembers each round's clip for the secure sum, saves and
// restores it with the accountant, and refuses a count noise that is not its clipper's.
func TestDistributedDPAdaptiveClip(t *testing.T) {
	build := func(countStddev float64) (*DistributedDP, error) {
		ac := privacy.DefaultAdaptiveClipConfig(100)
		ac.InitialClip = 2
		a, err := privacy.NewAdaptiveClipper(ac)
		if err != nil {
			t.Fatal(err)
		}
		return NewDistributedDP(DistributedDPConfig{
			DDP: privacy.DDPConfig{Mechanism: privacy.MechanismSkellam, Bits: 16, Clip: 2, NoiseMultiplier: 1, MinClients: 80,
				Cohort: 100, CountStddev: countStddev},
			Dim: 50, SamplingRate: 0.1, Clients: 1000, Delta: 1e-5, Accountant: privacy.NewRDPAccountant(privacy.ConversionImproved), Adaptive: a})
	}
	if _, err := build(3); err == nil {
		t.Fatal("a count noise other than the clipper's accepted")
	}
	d, err := build(5)
	if err != nil {
		t.Fatal(err)
	}
	if c := d.ConfigureFit(1, FitConfig{}).ClipNorm; c != 2 || d.Clip(1) != 2 {
		t.Fatalf("round 1 clip %v", c)
	}
	// 90 clients, all unclipped, noised count +0: Σ(b − ½) = 45, fraction 0.95.
	if _, err := d.Finalize(1, make([]float64, 50), 90, 90); err != nil {
		t.Fatal(err)
	}
	want := 2 * math.Exp(-0.2*(45.0/100+0.5-0.5))
	if d.Clip(2) != want || d.Clip(1) != 2 {
		t.Fatalf("clip after round 1: %v (round 1's stays %v), want %v", d.Clip(2), d.Clip(1), want)
	}
	if _, _, err := d.Account(1); err != nil {
		t.Fatal(err)
	}
	state, err := d.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	e, _ := build(5)
	if err := e.RestoreState(state); err != nil || e.Clip(2) != want {
		t.Fatalf("restored clip %v (%v), want %v", e.Clip(2), err, want)
	}
}
