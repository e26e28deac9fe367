package securesum

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"shoal/fl"
	"shoal/privacy"
)

// TestDDPSimulationMatchesSecAgg holds the simulation fast path to the protocol it stands in
// for. ddgauss (each client draws its own share in both): with the same seeded randomness the
// released sums are identical, dropouts included. Skellam (one summed draw at the server): the
// same rounding, and the noise in the released sum has the same law (two-sample
// Kolmogorov–Smirnov and variance against the protocol's, over many rounds).
func TestDDPSimulationMatchesSecAgg(t *testing.T) {
	const n, dim = 6, 60
	rng := rand.New(rand.NewPCG(7, 8))
	inputs := map[fl.ClientID]fl.SumInput{}
	for i := range n {
		u := make([]float32, dim)
		for j := range u {
			u[j] = float32(rng.NormFloat64() * 0.2) // norm ≈ 1.5 > clip 1: clipped
		}
		inputs[fl.ClientID(i)] = fl.SumInput{Update: u, Weight: 1}
	}
	drop := map[fl.ClientID]int{3: 2} // before its masked input; the simulation never hears from it
	cfg := func(mech string) *privacy.DDPConfig {
		return &privacy.DDPConfig{Mechanism: mech, Bits: 12, Clip: 1, NoiseMultiplier: 0.5, MinClients: 4, Cohort: n}
	}
	build := func(mech string, seed uint64) (*SecAgg, *DDPSimulation) {
		p, err := NewSecAgg(SecAggOptions{Bits: 12, MaxDropout: 0.3, DDP: cfg(mech), Rand: seeded(seed)})
		if err != nil {
			t.Fatal(err)
		}
		s, err := p.SimulatedDDP()
		if err != nil {
			t.Fatal(err)
		}
		return p, s
	}
	simDrop := map[fl.ClientID]int{3: 0}
	real, sim := build(privacy.MechanismDDGauss, 5)
	if !strings.Contains(sim.Describe(), "SIMULATION") || !strings.Contains(sim.Describe(), "no secure aggregation") {
		t.Fatalf("the simulation does not say what it is: %s", sim.Describe())
	}
	for round := 1; round <= 3; round++ {
		a, err := drive(t, real, round, inputs, dim, drop)
		if err != nil {
			t.Fatal(err)
		}
		b, err := drive(t, sim, round, inputs, dim, simDrop)
		if err != nil {
			t.Fatal(err)
		}
		if a.Count != n-1 || b.Count != n-1 || !slices.Equal(a.Sum, b.Sum) {
			t.Fatalf("round %d: SecAgg released %d shares, the simulation %d; sums equal: %v", round, a.Count, b.Count, slices.Equal(a.Sum, b.Sum))
		}
	}

	plain := make([]float64, dim)
	for id, in := range inputs {
		if id == 3 {
			continue
		}
		var n2 float64
		for _, v := range in.Update {
			n2 += float64(v) * float64(v)
		}
		f := min(1, 1/math.Sqrt(n2))
		for j, v := range in.Update {
			plain[j] += float64(v) * f
		}
	}
	errs := func(p fl.SecureSum, d map[fl.ClientID]int, rounds int) []float64 {
		var out []float64
		for round := 1; round <= rounds; round++ {
			r, err := drive(t, p, round, inputs, dim, d)
			if err != nil {
				t.Fatal(err)
			}
			for j := range dim {
				out = append(out, r.Sum[j]-plain[j])
			}
		}
		slices.Sort(out)
		return out
	}
	real, _ = build(privacy.MechanismSkellam, 11)
	_, sim = build(privacy.MechanismSkellam, 12)
	const rounds = 120
	x, y := errs(real, drop, rounds), errs(sim, simDrop, rounds)
	params, _ := cfg(privacy.MechanismSkellam).Params(dim)
	want := params.SumStd(n - 1)
	var sds []float64
	for _, e := range [][]float64{x, y} {
		var s2 float64
		for _, v := range e {
			s2 += v * v
		}
		sd := math.Sqrt(s2 / float64(len(e)))
		if sd < 0.97*want || sd > 1.1*want {
			t.Fatalf("noise sd %v, want ≈ %v", sd, want)
		}
		sds = append(sds, sd)
	}
	// 7,200 values each: the sd is known to ~1%; one share more or less would be 9–10%.
	if r := sds[1] / sds[0]; math.Abs(r-1) > 0.05 {
		t.Fatalf("noise sd: SecAgg %v, simulation %v", sds[0], sds[1])
	}
	// Two-sample KS over rounds·dim values each (coordinates of one round are not independent,
	// so the critical value is taken at the number of rounds·dim/4).
	var d float64
	for i, j := 0, 0; i < len(x) && j < len(y); {
		if x[i] <= y[j] {
			i++
		} else {
			j++
		}
		d = max(d, math.Abs(float64(i)/float64(len(x))-float64(j)/float64(len(y))))
	}
	if crit := 1.95 * math.Sqrt(2/(float64(len(x))/4)); d > crit {
		t.Fatalf("Skellam: KS distance %v between SecAgg's and the simulation's noise > %v", d, crit)
	}
	// A non-finite update is refused by the encoder (the input check leaves the scan to it).
	bad := fl.SumInput{Update: append([]float32{float32(math.Inf(1))}, make([]float32, dim-1)...), Weight: 1}
	if c, err := sim.NewClient(1, 99, bad); err == nil {
		if _, err := c.Handle(append(make([]byte, 16), 0, 0, 0, 0, 0, 0, 0, 1, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0)); err == nil || !strings.Contains(err.Error(), "+Inf") {
			t.Fatalf("an update with +Inf: %v", err)
		}
	}
	// Not a network backend: no announced Spec builds it.
	if slices.Contains(Names(), sim.Name()) {
		t.Fatalf("%s is a registered backend", sim.Name())
	}
}

// TestSecAggDDPAdaptiveCount: under distributed DP with adaptive clipping the clients clip to
// the round's clip that the setup announces, and the only count the server gets is the noised
// sum of their indicators: centred on the true count with the count noise of the survivors'
// shares, never the count itself. The simulation path releases the same law. A client refuses
// a setup without the round's clip, and a fixed-clip run's client refuses one with a clip.
func TestSecAggDDPAdaptiveCount(t *testing.T) {
	const n, dim, sigmaB = 12, 50, 3.0
	rng := rand.New(rand.NewPCG(1, 2))
	inputs := map[fl.ClientID]fl.SumInput{}
	for i := range n {
		u := make([]float32, dim)
		for j := range u {
			u[j] = float32(rng.NormFloat64() * 0.05) // norm ≈ 0.35
		}
		inputs[fl.ClientID(i)] = fl.SumInput{Update: u, Weight: 1, Unclipped: float64(i % 2)} // 6 unclipped
	}
	cfg := privacy.DDPConfig{Mechanism: privacy.MechanismSkellam, Bits: 16, Clip: 1, NoiseMultiplier: 0.1, MinClients: 8, Cohort: n, CountStddev: sigmaB}
	for _, mech := range []string{privacy.MechanismSkellam, privacy.MechanismDDGauss} {
		cfg.Mechanism = mech
		c := cfg
		p, err := NewSecAgg(SecAggOptions{Bits: 16, MaxDropout: 0.3, DDP: &c, Rand: seeded(3)})
		if err != nil {
			t.Fatal(err)
		}
		p.SetDDPClip(func(round int) float64 { return 0.1 }) // below every norm: all clipped to 0.1
		sim, _ := p.SimulatedDDP()
		for name, proto := range map[string]fl.SecureSum{"secagg": p, "simulation": sim} {
			drop := map[fl.ClientID]int{0: 2, 1: 2} // one unclipped and one clipped client drop out
			if proto == sim {
				drop = map[fl.ClientID]int{0: 0, 1: 0}
			}
			const rounds = 40
			var s, s2 float64
			distinct := map[float64]bool{}
			for round := 1; round <= rounds; round++ {
				r, err := drive(t, proto, round, inputs, dim, drop)
				if err != nil {
					t.Fatal(err)
				}
				if r.Count != n-2 {
					t.Fatalf("%s %s: %d shares", mech, name, r.Count)
				}
				// The sum is of updates clipped to the announced 0.1: norm ≈ 0.1·√(n−2) plus noise.
				var norm2 float64
				for _, v := range r.Sum {
					norm2 += v * v
				}
				pp := privacyParams(t, c, 0.1, dim)
				noise2 := float64(dim) * math.Pow(pp.SumStd(n-2), 2)
				if norm2 > 0.1*0.1*float64(n-2)*1.5+2*noise2 || norm2 < 0.1*0.1*float64(n-2)*0.6 {
					t.Fatalf("%s %s: ‖sum‖² = %v: not clipped to the round's 0.1", mech, name, norm2)
				}
				e := r.Unclipped - 5 // 5 of the 10 survivors unclipped
				s += e
				s2 += e * e
				distinct[r.Unclipped] = true
			}
			want := sigmaB * math.Sqrt(float64(n-2)/8) // survivors' shares of a noise split in 8
			mean, sd := s/rounds, math.Sqrt(s2/rounds-(s/rounds)*(s/rounds))
			if math.Abs(mean) > 5*want/math.Sqrt(rounds) || sd < 0.6*want || sd > 1.5*want || len(distinct) < rounds/3 {
				t.Fatalf("%s %s: noised count error mean %v sd %v (%d distinct), want 0 and ≈ %v", mech, name, mean, sd, len(distinct), want)
			}
		}
		// Setups without the round's clip, or with one in a fixed-clip run, are refused.
		srv, err := p.NewServer(50, []fl.ClientID{1, 2, 3, 4, 5, 6, 7, 8}, dim, 1)
		if err != nil {
			t.Fatal(err)
		}
		msgs, _, _ := srv.Next()
		cl, _ := p.NewClient(50, 1, inputs[1])
		if _, err := cl.Handle(msgs[1][:setupSize]); err == nil || !strings.Contains(err.Error(), "clip") {
			t.Fatalf("%s: an adaptive round's setup without its clip: %v", mech, err)
		}
		fixed := cfg
		fixed.CountStddev = 0
		q, _ := NewSecAgg(SecAggOptions{Bits: 16, MaxDropout: 0.3, DDP: &fixed, Rand: seeded(3)})
		cl, _ = q.NewClient(50, 1, inputs[1])
		if _, err := cl.Handle(msgs[1]); err == nil || !strings.Contains(err.Error(), "clip") {
			t.Fatalf("%s: a fixed-clip client took a setup with a round clip: %v", mech, err)
		}
	}
}

func privacyParams(t *testing.T, c privacy.DDPConfig, clip float64, dim int) privacy.DDPParams {
	t.Helper()
	c.Clip = clip
	p, err := c.Params(dim)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
