package secagg

import (
	"math"
	mrand "math/rand/v2"
	"strings"
	"testing"
)

// roundingStream is a seeded randomness stream for the rounding draws.
func roundingStream(t *testing.T, seed uint64) *byteStream {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	key[31] = 'r'
	s, err := newByteStream(mrand.NewChaCha8(key))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// l2 returns the Euclidean norm of v.
func l2(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}

// roundingInput returns an update of norm at most s. Kinds: "random", a random direction of
// norm s; "sparse", all of s in the first entry and zeros elsewhere; "midpoint", as many
// entries as fit at the same positive rounding midpoint, then (unless exact) the rest of the
// norm in the first entry. The levels 2^b − 1 are odd, so the midpoints between quantised
// values are the multiples of γ, 0 among them: every zero or midpoint entry moves by exactly
// ±γ/2, the largest variance, and the expected squared norm grows by the most.
func roundingInput(cfg *Config, kind string, s float64, exact bool, rng *mrand.Rand) []float32 {
	u := make([]float32, cfg.Dim)
	m := cfg.normDim()
	s *= 1 - 1e-6 // float32 entries: stay inside the ball
	switch kind {
	case "random":
		var n float64
		for i := range u {
			u[i] = float32(rng.NormFloat64())
			n += float64(u[i]) * float64(u[i])
		}
		for i := range u {
			u[i] = float32(float64(u[i]) * s / math.Sqrt(n))
		}
	case "sparse":
		u[0] = float32(s)
	case "midpoint":
		g := cfg.quantStep()
		x := g * max(1, math.Floor(s/math.Sqrt(float64(m))/g))
		count := min(m, int(s*s/(x*x)))
		for i := range count {
			u[i] = float32(x)
		}
		if !exact {
			u[0] = float32(math.Sqrt(x*x + s*s - float64(count)*x*x))
		}
	}
	return u
}

// Conditional rounding bounds the dequantised update by NormBound(cfg, S) for every input of
// norm ≤ S, including the midpoint worst case, while plain stochastic rounding exceeds S; a
// draw almost always succeeds the first time.
func TestConditionalRoundingBound(t *testing.T) {
	const s = 0.5
	for _, c := range []struct {
		bits   int
		clip   float64
		dim    int
		trials int
	}{{16, 0.5, 199_210, 6}, {8, 0.5, 20_000, 40}, {4, 1, 5_000, 100}, {2, 0.25, 3_000, 100}} {
		cfg := Config{Round: 1, Clients: 4, Dim: c.dim, Bits: c.bits, ClipRange: c.clip, MaxWeight: 1,
			Graph: GraphComplete, Degree: 3, Threshold: 2}
		bound := NormBound(&cfg, s)
		if !(bound > s) {
			t.Fatalf("bound %v for clip %v", bound, s)
		}
		rng := mrand.New(mrand.NewPCG(uint64(c.bits), 1))
		for _, kind := range []string{"random", "sparse", "midpoint"} {
			worst, draws, over := 0.0, 0, 0
			for trial := range c.trials {
				u := roundingInput(&cfg, kind, s, false, rng)
				var x []float64
				for _, v := range u {
					x = append(x, float64(v))
				}
				if n := l2(x); n > s {
					t.Fatalf("input norm %v > %v", n, s)
				}
				rs := roundingStream(t, uint64(1000*c.bits+trial))
				enc := make([]uint32, c.dim+1)
				d, err := cfg.encodeInputDraws(u, 1, rs, enc)
				if err != nil {
					t.Fatal(err)
				}
				draws += d
				n := l2(Dequantise(&cfg, enc))
				worst = max(worst, n)
				if n > s {
					over++
				}
				if n > bound*(1+1e-12) {
					t.Fatalf("bits %d %s: dequantised norm %v exceeds the bound %v", c.bits, kind, n, bound)
				}
			}
			t.Logf("bits %d, ±%g, dim %d, %s: bound %.6g, largest norm %.6g, %d/%d above S = %g, %.3f draws per input",
				c.bits, c.clip, c.dim, kind, bound, worst, over, c.trials, s, float64(draws)/float64(c.trials))
			if draws != c.trials {
				t.Fatalf("%d draws for %d inputs: the bound should hold at the first draw except with probability 2^-30", draws, c.trials)
			}
			if kind != "random" && over == 0 {
				t.Fatalf("bits %d: no midpoint input exceeded S after rounding; the test does not exercise the bound", c.bits)
			}
		}
	}
}

// With the bound tightened to the mean (slack 0), about half the draws of a midpoint input
// fail: every output still meets the tightened bound, the redraws cost about one more draw,
// and the rounding stays unbiased to within the statistical error. A bound no draw can meet
// makes the client give up with an error instead of looping.
func TestConditionalRoundingRedraws(t *testing.T) {
	saved := roundingSlack
	t.Cleanup(func() { roundingSlack = saved })
	roundingSlack = 0
	const s = 0.5
	cfg := Config{Round: 1, Clients: 4, Dim: 2000, Bits: 4, ClipRange: 1, MaxWeight: 1,
		Graph: GraphComplete, Degree: 3, Threshold: 2}
	bound := NormBound(&cfg, s)
	u := roundingInput(&cfg, "midpoint", s, true, nil)
	mean := make([]float64, cfg.Dim)
	const trials = 400
	draws := 0
	for trial := range trials {
		enc := make([]uint32, cfg.Dim+1)
		d, err := cfg.encodeInputDraws(u, 1, roundingStream(t, uint64(trial)), enc)
		if err != nil {
			t.Fatal(err)
		}
		draws += d
		x := Dequantise(&cfg, enc)
		if n := l2(x); n > bound*(1+1e-12) {
			t.Fatalf("norm %v above the bound %v", n, bound)
		}
		for i, v := range x {
			mean[i] += v / trials
		}
	}
	if per := float64(draws) / trials; per < 1.3 || per > 4 {
		t.Fatalf("%.2f draws per input with the bound at the mean, want about 2", per)
	}
	// Bias: the conditioning favours shorter vectors; per entry it must stay well below γ/2.
	var bias float64
	for i, v := range mean {
		bias += v - float64(u[i])
	}
	bias /= float64(cfg.Dim)
	if g := cfg.quantStep(); math.Abs(bias) > g/20 {
		t.Fatalf("mean rounding error %v per entry (γ = %v)", bias, g)
	}
	roundingSlack = -1000
	_, err := cfg.encodeInputDraws(u, 1, roundingStream(t, 1), make([]uint32, cfg.Dim+1))
	if err == nil || !strings.Contains(err.Error(), "draws") {
		t.Fatalf("unreachable bound: %v", err)
	}
}

// NormDim excludes trailing entries (an adapter's count) from the bound, and the draws of the
// entries are the ones plain rounding makes: the same randomness gives the same encoding.
func TestConditionalRoundingNormDim(t *testing.T) {
	cfg := Config{Round: 1, Clients: 4, Dim: 1001, NormDim: 1000, Bits: 8, ClipRange: 0.5, MaxWeight: 1,
		Graph: GraphComplete, Degree: 3, Threshold: 2}
	u := roundingInput(&Config{Dim: 1000, Bits: 8, ClipRange: 0.5}, "random", 0.3, false, mrand.New(mrand.NewPCG(1, 1)))
	u = append(u, 0.5) // the count entry, at the clip: far outside the norm bound of the rest
	enc, err := EncodeInput(&cfg, u, 1, mrand.NewChaCha8([32]byte{1}))
	if err != nil {
		t.Fatal(err)
	}
	x := Dequantise(&cfg, enc)
	if n := l2(x[:1000]); n > NormBound(&cfg, 0.3) {
		t.Fatalf("norm %v", n)
	}
	if x[1000] != 0.5 {
		t.Fatalf("count entry %v, want 0.5", x[1000])
	}
	all := cfg
	all.NormDim = 0
	enc2, err := EncodeInput(&all, u, 1, mrand.NewChaCha8([32]byte{1}))
	if err != nil {
		t.Fatal(err)
	}
	for i := range enc {
		if enc[i] != enc2[i] {
			t.Fatalf("entry %d: %d with NormDim, %d without; one draw each should consume the same randomness", i, enc[i], enc2[i])
		}
	}
	bad := cfg
	bad.NormDim = 1002
	if bad.Validate() == nil {
		t.Fatal("NormDim beyond Dim accepted")
	}
}
