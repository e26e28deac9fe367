package privacy

import (
	"testing"
)

func benchVector(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i%101-50) * 1e-3
	}
	return v
}

// BenchmarkClipAndNoise1M is one client's local-DP pipeline on a million parameters: clip to
// S = 1, then add lattice Gaussian noise of σ = 1 in place.
func BenchmarkClipAndNoise1M(b *testing.B) {
	const n = 1_000_000
	v := benchVector(n)
	g, err := NewGaussianNoise(1, 1, n)
	if err != nil {
		b.Fatal(err)
	}
	src := NewSeededSource(1)
	getBaseTable()
	b.SetBytes(4 * n)
	defer reportCPU(b)()
	for b.Loop() {
		if _, err := ClipL2(v, 1); err != nil {
			b.Fatal(err)
		}
		if err := g.Add32(v, v, src); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCentralNoise1M noises a float64 aggregate of a million parameters into float32.
func BenchmarkCentralNoise1M(b *testing.B) {
	const n = 1_000_000
	x := make([]float64, n)
	dst := make([]float32, n)
	g, err := NewGaussianNoise(1, 1, n)
	if err != nil {
		b.Fatal(err)
	}
	src := NewSeededSource(1)
	getBaseTable()
	b.SetBytes(8 * n)
	defer reportCPU(b)()
	for b.Loop() {
		if err := g.Add64(dst, x, src); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClip1M is flat L2 clipping alone (two passes over 4 MB: the memory-bandwidth part).
func BenchmarkClip1M(b *testing.B) {
	v := benchVector(1_000_000)
	b.SetBytes(4 * int64(len(v)))
	defer reportCPU(b)()
	for b.Loop() {
		if _, err := ClipL2(v, 1e-3); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDiscreteGaussian1M draws a million integer noise values (the sampler alone).
func BenchmarkDiscreteGaussian1M(b *testing.B) {
	out := make([]int64, 1_000_000)
	src := NewSeededSource(1)
	getBaseTable()
	defer reportCPU(b)()
	for b.Loop() {
		fillDiscreteGaussian(out, src)
	}
}

// BenchmarkRandomBits12MB is the AES-CTR keystream a million noise values consume (12 bytes
// each), drawn the way the sampler draws it: the throughput bound of the noise.
func BenchmarkRandomBits12MB(b *testing.B) {
	src := NewSeededSource(1)
	buf := make([]byte, noiseChunk*12)
	b.SetBytes(12_000_000)
	defer reportCPU(b)()
	for b.Loop() {
		for range 12_000_000 / len(buf) {
			src.fill(buf)
		}
	}
}

func benchAccountant(b *testing.B, kind string, q, z float64, steps int) {
	defer reportCPU(b)()
	for b.Loop() {
		a, err := NewAccountant(kind)
		if err != nil {
			b.Fatal(err)
		}
		if err := a.Compose(q, z, steps); err != nil {
			b.Fatal(err)
		}
		if _, err := a.Epsilon(1e-5); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRDPQuery10k is a cold RDP query (curve computed from scratch) for 10,000 steps.
func BenchmarkRDPQuery10k(b *testing.B) { benchAccountant(b, "rdp", 256.0/60000, 1.1, 10000) }

// BenchmarkRDPQueryCached10k is a query on an accountant whose per-step curve is cached, as
// when the engine asks after every round.
func BenchmarkRDPQueryCached10k(b *testing.B) {
	a := NewRDPAccountant(ConversionImproved)
	if err := a.Compose(256.0/60000, 1.1, 10000); err != nil {
		b.Fatal(err)
	}
	defer reportCPU(b)()
	for b.Loop() {
		if _, err := a.Epsilon(1e-5); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPLDQuery10k is a PLD query for 10,000 steps.
func BenchmarkPLDQuery10k(b *testing.B) { benchAccountant(b, "pld", 256.0/60000, 1.1, 10000) }

// BenchmarkExactDiscreteGaussian is one draw of the exact CKS sampler at σ_K², the variance the
// fast sampler produces: the per-coordinate cost that rules it out for a million parameters.
func BenchmarkExactDiscreteGaussian(b *testing.B) {
	src := NewSeededSource(1)
	sigma2 := uint64(baseSigma * baseSigma * (1 + convStride*convStride))
	defer reportCPU(b)()
	for b.Loop() {
		if _, err := SampleDiscreteGaussianExact(sigma2, src); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPLDEngineRound is what the engine does each round with a PLD accountant after 1,000
// rounds: EpsilonAfter (the --max-epsilon check), Compose, Epsilon.
func BenchmarkPLDEngineRound(b *testing.B) {
	a, err := NewPLDAccountant(DefaultPLDDiscretization)
	if err != nil {
		b.Fatal(err)
	}
	if err := a.Compose(0.01, 1, 1000); err != nil {
		b.Fatal(err)
	}
	defer reportCPU(b)()
	for b.Loop() {
		if _, err := a.EpsilonAfter(0.01, 1, 1, 1e-5); err != nil {
			b.Fatal(err)
		}
		if err := a.Compose(0.01, 1, 1); err != nil {
			b.Fatal(err)
		}
		if _, err := a.Epsilon(1e-5); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDDPAccountant200Rounds: the accountant's work in a 200-round distributed-DP run whose
// every round is a distinct event (the discrete Gaussian with adaptive clipping's count).
func BenchmarkDDPAccountant200Rounds(b *testing.B) {
	c := DDPConfig{Mechanism: MechanismDDGauss, Bits: 16, Clip: 0.1, NoiseMultiplier: 2, MinClients: 843, Cohort: 1000,
		ModClipProb: DefaultModClipProb, CountStddev: 50}
	p, err := c.Params(199210)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		acc := NewRDPAccountant(ConversionImproved)
		for r := range 200 {
			if err := acc.ComposeEvent(DiscreteStep(p.Event(900+r), 0.1, 1)); err != nil {
				b.Fatal(err)
			}
			if _, err := acc.Epsilon(1e-5); err != nil {
				b.Fatal(err)
			}
		}
	}
}
