package privacy

import (
	"math"
	"strings"
	"testing"
)

func TestPoissonAndSkellamStatistics(t *testing.T) {
	src := NewSeededSource(11)
	for _, mu := range []float64{0.7, 3, 9.5, 10, 50, 5000, 2e6} {
		ps := newPoissonSampler(mu)
		const n = 200000
		var s, s2 float64
		for range n {
			v := float64(ps.sample(src))
			s += v
			s2 += v * v
		}
		mean := s / n
		variance := s2/n - mean*mean
		// 5 standard errors of the mean and of the variance (≈ μ√(2/n) for large μ).
		if math.Abs(mean-mu) > 5*math.Sqrt(mu/n) {
			t.Errorf("Poisson(%v): mean %v", mu, mean)
		}
		if math.Abs(variance-mu) > 5*mu*math.Sqrt(2.0/n)+5*math.Sqrt(mu/n) {
			t.Errorf("Poisson(%v): variance %v", mu, variance)
		}
	}
}

// TestPoissonAndDGaussPMF compares empirical frequencies with the exact probabilities (a
// chi-square test over the bulk of the support).
func TestPoissonAndDGaussPMF(t *testing.T) {
	src := NewSeededSource(12)
	const n = 400000
	check := func(name string, draw func() int64, pmf func(k int64) float64, lo, hi int64) {
		t.Helper()
		counts := map[int64]float64{}
		for range n {
			counts[draw()]++
		}
		var chi2 float64
		bins := 0
		for k := lo; k <= hi; k++ {
			e := n * pmf(k)
			if e < 20 {
				continue
			}
			d := counts[k] - e
			chi2 += d * d / e
			bins++
		}
		// χ² with `bins` degrees of freedom: mean bins, sd √(2·bins); 6 sd is far out.
		if chi2 > float64(bins)+6*math.Sqrt(2*float64(bins)) {
			t.Errorf("%s: χ² = %.1f over %d bins", name, chi2, bins)
		}
	}
	for _, mu := range []float64{3, 40} {
		ps := newPoissonSampler(mu)
		check("Poisson", func() int64 { return ps.sample(src) }, func(k int64) float64 {
			lg, _ := math.Lgamma(float64(k) + 1)
			return math.Exp(-mu + float64(k)*math.Log(mu) - lg)
		}, 0, int64(mu*4+20))
	}
	for _, s2 := range []float64{0.3, 4, 150} {
		g := newDGaussSampler(s2)
		norm := 0.0
		for k := -2000; k <= 2000; k++ {
			norm += math.Exp(-float64(k*k) / (2 * s2))
		}
		check("discrete Gaussian", func() int64 { return g.sample(src) }, func(k int64) float64 {
			return math.Exp(-float64(k*k)/(2*s2)) / norm
		}, -200, 200)
	}
}

func TestRotationInverts(t *testing.T) {
	p := DDPParams{PaddedDim: 1024}
	x := make([]float64, 1024)
	for i := range x {
		x[i] = math.Sin(float64(i)) * float64(i%7)
	}
	y := append([]float64(nil), x...)
	seed := RotationSeed([]byte("run"), 3)
	p.Rotate(y, seed)
	var n1, n2 float64
	for i := range x {
		n1 += x[i] * x[i]
		n2 += y[i] * y[i]
	}
	if math.Abs(n1-n2) > 1e-9*n1 {
		t.Fatalf("rotation changed the norm: %v → %v", n1, n2)
	}
	p.Unrotate(y, seed)
	for i := range x {
		if math.Abs(x[i]-y[i]) > 1e-9 {
			t.Fatalf("entry %d: %v after rotating back, want %v", i, y[i], x[i])
		}
	}
	other := append([]float64(nil), x...)
	p.Rotate(other, RotationSeed([]byte("run"), 4))
	p.Rotate(x, seed)
	same := 0
	for i := range x {
		if x[i] == other[i] {
			same++
		}
	}
	if same > 10 {
		t.Fatalf("rounds 3 and 4 rotate alike in %d of 1024 entries", same)
	}
}

// TestDDPSumEqualsPlainSumPlusNoise: the modular sum of n encoded contributions decodes to the
// plain sum of the clipped updates plus noise of the stated standard deviation, for both
// mechanisms; every rounded contribution meets the norm bound Δ2.
func TestDDPSumEqualsPlainSumPlusNoise(t *testing.T) {
	const dim, n = 3000, 20
	for _, mech := range []string{MechanismSkellam, MechanismDDGauss} {
		cfg := DDPConfig{Mechanism: mech, Bits: 16, Clip: 1, NoiseMultiplier: 1, MinClients: n, Cohort: n}
		p, err := cfg.Params(dim)
		if err != nil {
			t.Fatal(err)
		}
		if p.PaddedDim != 4096 {
			t.Fatalf("padded dim %d", p.PaddedDim)
		}
		seed := RotationSeed([]byte("run-x"), 7)
		src := NewSeededSource(99)
		plain := make([]float64, dim)
		ring := make([]uint32, p.PaddedDim)
		for c := range n {
			u := make([]float32, dim)
			for j := range u {
				u[j] = float32(math.Sin(float64(j*(c+1)))) * 0.05 // norm ≈ 1.9: clipped to 1
			}
			var n2 float64
			for _, v := range u {
				n2 += float64(v) * float64(v)
			}
			f := math.Min(1, cfg.Clip/math.Sqrt(n2))
			for j, v := range u {
				plain[j] += float64(v) * f
			}
			enc, err := p.Encode(u, seed, src)
			if err != nil {
				t.Fatal(err)
			}
			for j, v := range enc {
				if v >= 1<<16 {
					t.Fatalf("entry %d = %d outside Z_2^16", j, v)
				}
				ring[j] = (ring[j] + v) & (1<<16 - 1)
			}
		}
		got, err := p.Decode(ring, seed)
		if err != nil {
			t.Fatal(err)
		}
		var s, s2 float64
		for j := range got {
			d := got[j] - plain[j]
			s += d
			s2 += d * d
		}
		mean, sd := s/dim, math.Sqrt(s2/dim)
		// Noise z·Δ2·γ = z·B(S) ≈ 1 per coordinate, plus rounding (γ/2 at most per client).
		want := p.SumStd(n)
		if math.Abs(want-cfg.NoiseMultiplier*p.L2*p.Gamma) > 1e-9 {
			t.Fatalf("%s: summed noise sd %v, want z·Δ2·γ = %v", mech, want, cfg.NoiseMultiplier*p.L2*p.Gamma)
		}
		rounding := p.Gamma * math.Sqrt(float64(n)/4)
		if math.Abs(mean) > 5*want/math.Sqrt(dim) || sd < want*0.93 || sd > math.Hypot(want, rounding)*1.07 {
			t.Errorf("%s: decoded − plain sum has mean %v and sd %v; want ≈ 0 and %v (γ = %v)", mech, mean, sd, want, p.Gamma)
		}
	}
}

func TestConditionalRoundingBound(t *testing.T) {
	cfg := DDPConfig{Mechanism: MechanismSkellam, Bits: 8, Clip: 1, NoiseMultiplier: 0.5, MinClients: 10, Cohort: 10}
	p, err := cfg.Params(1000)
	if err != nil {
		t.Fatal(err)
	}
	src := NewSeededSource(5)
	x := make([]float64, p.PaddedDim)
	x[0] = 1 / p.Gamma // norm S in integer units; a sparse vector: the zeros move the most
	q := make([]int64, p.PaddedDim)
	for range 50 {
		if err := p.roundConditional(x, q, src); err != nil {
			t.Fatal(err)
		}
		var n2 float64
		for _, v := range q {
			n2 += float64(v * v)
		}
		if math.Sqrt(n2) > p.L2 {
			t.Fatalf("rounded norm %v > Δ2 = %v", math.Sqrt(n2), p.L2)
		}
	}
	// A bound no rounding can meet is reported, not silently exceeded.
	p.L2 = 0.5
	x[0] = 5
	if err := p.roundConditional(x, q, src); err == nil {
		t.Fatal("rounding under an unreachable bound succeeded")
	}
}

// skellamPMF is the pmf of Sk(V/2, V/2) over [−w, w], by convolving two Poisson pmfs.
func skellamPMF(v float64, w int) []float64 {
	mu := v / 2
	m := w + int(mu) + 40*int(math.Sqrt(mu)+1)
	pois := make([]float64, m+1)
	for k := range pois {
		lg, _ := math.Lgamma(float64(k) + 1)
		pois[k] = math.Exp(-mu + float64(k)*math.Log(mu) - lg)
	}
	out := make([]float64, 2*w+1)
	for d := -w; d <= w; d++ {
		var s float64
		for a := max(0, d); a <= m && a-d <= m; a++ {
			s += pois[a] * pois[a-d]
		}
		out[d+w] = s
	}
	return out
}

// dgaussSumPMF is the pmf of the sum of n independent N_Z(0, σ²) over [−w, w].
func dgaussSumPMF(s2 float64, n, w int) []float64 {
	r := int(12*math.Sqrt(s2)) + 2
	base := make([]float64, 2*r+1)
	var z float64
	for k := -r; k <= r; k++ {
		base[k+r] = math.Exp(-float64(k*k) / (2 * s2))
		z += base[k+r]
	}
	for i := range base {
		base[i] /= z
	}
	cur := base
	for range n - 1 {
		next := make([]float64, len(cur)+2*r)
		for i, a := range cur {
			for j, b := range base {
				next[i+j] += a * b
			}
		}
		cur = next
	}
	c := len(cur) / 2
	out := make([]float64, 2*w+1)
	for k := -w; k <= w; k++ {
		if c+k >= 0 && c+k < len(cur) {
			out[k+w] = cur[c+k]
		}
	}
	return out
}

// renyi is D_α(P‖Q) for pmfs on the same support.
func renyi(p, q []float64, alpha float64) float64 {
	var s float64
	for i := range p {
		if p[i] == 0 {
			continue
		}
		s += math.Exp(alpha*math.Log(p[i]) + (1-alpha)*math.Log(q[i]))
	}
	return math.Log(s) / (alpha - 1)
}

// shiftMix is (1−q)·P + q·P(· − shift).
func shiftMix(p []float64, shift int, q float64) []float64 {
	out := make([]float64, len(p))
	for i := range p {
		var s float64
		if j := i - shift; j >= 0 && j < len(p) {
			s = p[j]
		}
		out[i] = (1-q)*p[i] + q*s
	}
	return out
}

// TestDiscreteRDPAboveNumericalDivergence checks the accountant's per-step RDP against the Rényi
// divergence of the 1-D mechanism computed numerically from its pmf, unsampled and Poisson-
// subsampled (both directions of the divergence): the bound is never below it.
func TestDiscreteRDPAboveNumericalDivergence(t *testing.T) {
	const w = 400
	type tc struct {
		ev  DiscreteEvent
		pmf []float64
	}
	var cases []tc
	for _, v := range []float64{2, 10, 60} {
		cases = append(cases, tc{DiscreteEvent{Mechanism: MechanismSkellam, ShareParam: v / 4, Shares: 4, Dim: 1}, skellamPMF(v, w)})
	}
	for _, s2 := range []float64{0.3, 1, 4} {
		cases = append(cases, tc{DiscreteEvent{Mechanism: MechanismDDGauss, ShareParam: s2, Shares: 3, Dim: 1}, dgaussSumPMF(s2, 3, w)})
	}
	orders := []float64{2, 3, 4, 6, 8, 12, 16, 24}
	for _, c := range cases {
		for _, delta := range []int{1, 2, 3} {
			ev := c.ev
			ev.L1, ev.L2 = float64(delta), float64(delta)
			shifted := shiftMix(c.pmf, delta, 1)
			for _, q := range []float64{1, 0.3, 0.05} {
				bound, err := DiscreteRDP(ev, q, orders)
				if err != nil {
					t.Fatal(err)
				}
				mix := shiftMix(c.pmf, delta, q)
				for i, a := range orders {
					// The tails of a width-400 window are negligible except at high order and
					// small noise; skip divergences the window cannot resolve.
					num := math.Max(renyi(mix, c.pmf, a), renyi(c.pmf, mix, a))
					if math.IsNaN(num) || math.IsInf(num, 0) {
						continue
					}
					if bound[i] < num*(1-1e-9) {
						t.Errorf("%s share %v ×%d, Δ = %d, q = %v, α = %v: bound %v below the numerical divergence %v",
							ev.Mechanism, ev.ShareParam, ev.Shares, delta, q, a, bound[i], num)
					}
				}
				_ = shifted
			}
		}
	}
}

// TestDDPApproachesGaussian: as b (and with it 1/γ) grows, the distributed mechanisms' ε
// approaches the central Gaussian's at the same noise multiplier.
func TestDDPApproachesGaussian(t *testing.T) {
	const delta = 1e-5
	for _, q := range []float64{1, 0.01} {
		steps := 1
		if q < 1 {
			steps = 100
		}
		gauss := NewRDPAccountant(ConversionImproved)
		ge, err := gauss.EpsilonAfter(q, 1, steps, delta)
		if err != nil {
			t.Fatal(err)
		}
		// The same Gaussian through the general subsampling bound the distributed steps use:
		// the limit the discrete mechanisms approach (equal to ge at q = 1).
		limit := ge
		if q < 1 {
			gl := DiscreteEvent{Mechanism: MechanismSkellam, L1: 1, L2: 1, ShareParam: 1e12, Shares: 1, Dim: 1}
			gl.L1, gl.L2 = 1e6, 1e6 // Δ2² = V: z = 1, discretisation terms ~10⁻⁶
			a := NewRDPAccountant(ConversionImproved)
			r, err := a.EpsilonAfterEvent(DiscreteStep(gl, q, steps), delta)
			if err != nil {
				t.Fatal(err)
			}
			limit = r.Epsilon
		}
		for _, mech := range []string{MechanismSkellam, MechanismDDGauss} {
			prev := math.Inf(1)
			for _, b := range []int{10, 12, 16, 20} {
				cfg := DDPConfig{Mechanism: mech, Bits: b, Clip: 0.5, NoiseMultiplier: 1, MinClients: 50, Cohort: 60}
				p, err := cfg.Params(199210)
				if err != nil {
					t.Fatal(err)
				}
				// The same noise as the central Gaussian's, z·S (not z·B(S), which a run adds):
				// the rounding's inflation of the sensitivity, B(S)/S, costs ε until γ√D ≪ S.
				ev := p.Event(50)
				ev.ShareParam = math.Pow(cfg.NoiseMultiplier*cfg.Clip/p.Gamma, 2) / 50
				a := NewRDPAccountant(ConversionImproved)
				r, err := a.EpsilonAfterEvent(DiscreteStep(ev, q, steps), delta)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s q = %v b = %d: γ = %.3g Δ2 = %.4g ε = %.4f (Gaussian %.4f, limit %.4f)", mech, q, b, p.Gamma, p.L2, r.Epsilon, ge, limit)
				if r.Epsilon < limit*(1-1e-3) {
					t.Errorf("%s b = %d: ε = %v below the Gaussian limit %v", mech, b, r.Epsilon, limit)
				}
				if r.Epsilon > prev*(1+1e-9) {
					t.Errorf("%s b = %d: ε = %v grew from %v at fewer bits", mech, b, r.Epsilon, prev)
				}
				prev = r.Epsilon
			}
			if prev > limit*1.01 {
				t.Errorf("%s q = %v: ε = %v at 20 bits, more than 1%% above the Gaussian's %v", mech, q, prev, limit)
			}
		}
	}
}

func TestDDPAccountantStateAndRefusals(t *testing.T) {
	cfg := DDPConfig{Mechanism: MechanismSkellam, Bits: 16, Clip: 1, NoiseMultiplier: 1, MinClients: 10, Cohort: 12}
	p, err := cfg.Params(5000)
	if err != nil {
		t.Fatal(err)
	}
	a := NewRDPAccountant(ConversionImproved)
	for _, n := range []int{10, 12, 10} {
		if err := a.ComposeEvent(DiscreteStep(p.Event(n), 0.1, 1)); err != nil {
			t.Fatal(err)
		}
	}
	before, err := a.Epsilon(1e-5)
	if err != nil {
		t.Fatal(err)
	}
	data, err := a.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	b, err := RestoreAccountant(data)
	if err != nil {
		t.Fatal(err)
	}
	after, err := b.Epsilon(1e-5)
	if err != nil || after != before || b.Steps() != 3 {
		t.Fatalf("restored: ε %v (was %v), %d steps, %v", after, before, b.Steps(), err)
	}
	// More shares, more noise, less ε; fewer would be more.
	more, _ := NewRDPAccountant(ConversionImproved).EpsilonAfterEvent(DiscreteStep(p.Event(20), 0.1, 3), 1e-5)
	fewer, _ := NewRDPAccountant(ConversionImproved).EpsilonAfterEvent(DiscreteStep(p.Event(5), 0.1, 3), 1e-5)
	if !(more.Epsilon < before && before < fewer.Epsilon) {
		t.Fatalf("ε with 20, 10–12, 5 shares: %v, %v, %v", more.Epsilon, before, fewer.Epsilon)
	}
	for _, bad := range []DDPConfig{
		{Mechanism: "laplace", Bits: 16, Clip: 1, NoiseMultiplier: 1, MinClients: 10, Cohort: 10},
		{Mechanism: MechanismSkellam, Bits: 30, Clip: 1, NoiseMultiplier: 1, MinClients: 10, Cohort: 10},
		{Mechanism: MechanismSkellam, Bits: 16, Clip: 1, NoiseMultiplier: 1, MinClients: 10, Cohort: 5},
		{Mechanism: MechanismSkellam, Bits: 4, Clip: 1, NoiseMultiplier: 1, MinClients: 10, Cohort: 1000},
	} {
		if _, err := bad.Params(100); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	pld, _ := NewPLDAccountant(DefaultPLDDiscretization)
	data, _ = a.MarshalJSON()
	var st AccountantState
	_ = st
	if _, err := RestoreAccountant([]byte(`{"accountant":"pld","events":[{"sampling_rate":0.1,"noise_multiplier":1,"steps":1,"discrete":{"mechanism":"skellam","l1":10,"l2":3,"share_param":5,"shares":2,"dim":4}}]}`)); err == nil {
		t.Error("a PLD accountant restored a distributed-DP step")
	}
	_ = pld
}

// BenchmarkDDPEncode199k is a client's cost for the README's 2NN (199,210 parameters): clip,
// rotation (padded to 2^18), scaling, conditional rounding and its noise share, one core.
func BenchmarkDDPEncode199k(b *testing.B) {
	u := make([]float32, 199210)
	for i := range u {
		u[i] = float32(math.Sin(float64(i))) * 0.001
	}
	for _, mech := range []string{MechanismSkellam, MechanismDDGauss} {
		b.Run(mech, func(b *testing.B) {
			p, err := DDPConfig{Mechanism: mech, Bits: 16, Clip: 0.5, NoiseMultiplier: 1, MinClients: 80, Cohort: 100}.Params(len(u))
			if err != nil {
				b.Fatal(err)
			}
			src := NewSeededSource(1)
			seed := RotationSeed([]byte("bench"), 1)
			stop := reportCPU(b)
			for b.Loop() {
				if _, err := p.Encode(u, seed, src); err != nil {
					b.Fatal(err)
				}
			}
			stop()
		})
	}
}

// TestFWHTMatchesRadix2 holds the cache-blocked radix-4 transform to the textbook radix-2 loop,
// bit for bit, at sizes below, at and above the block, with odd and even numbers of levels.
func TestFWHTMatchesRadix2(t *testing.T) {
	for _, n := range []int{1, 2, 4, 8, 32, 1024, fwhtBlock, 2 * fwhtBlock, 8 * fwhtBlock, 1 << 17} {
		x := make([]float64, n)
		src := NewSeededSource(uint64(n))
		for i := range x {
			x[i] = src.Float64() - 0.5
		}
		want := append([]float64(nil), x...)
		for h := 1; h < n; h <<= 1 {
			for i := 0; i < n; i += h << 1 {
				for j := i; j < i+h; j++ {
					u, v := want[j], want[j+h]
					want[j], want[j+h] = u+v, u-v
				}
			}
		}
		fwht(x)
		for i := range x {
			if math.Float64bits(x[i]) != math.Float64bits(want[i]) {
				t.Fatalf("n = %d: entry %d is %v, the radix-2 transform gives %v", n, i, x[i], want[i])
			}
		}
		// applySigns is an exact negation where the bit is set.
		s := signs([32]byte{byte(n)}, n)
		y := append([]float64(nil), x...)
		applySigns(y, s)
		for i := range y {
			w := x[i]
			if s[i/64]>>(i%64)&1 == 1 {
				w = -w
			}
			if math.Float64bits(y[i]) != math.Float64bits(w) {
				t.Fatalf("n = %d: sign of entry %d not applied", n, i)
			}
		}
	}
}

// BenchmarkDDPDecode199k is the server's extra cost per round under distributed DP: centring
// the ring sum, scaling by γ and the inverse rotation, for the README's 2NN.
func BenchmarkDDPDecode199k(b *testing.B) {
	p, err := DDPConfig{Mechanism: MechanismSkellam, Bits: 16, Clip: 0.5, NoiseMultiplier: 1, MinClients: 80, Cohort: 100}.Params(199210)
	if err != nil {
		b.Fatal(err)
	}
	ring := make([]uint32, p.PaddedDim)
	src := NewSeededSource(2)
	for i := range ring {
		ring[i] = uint32(src.Uint64()) & (1<<16 - 1)
	}
	seed := RotationSeed([]byte("bench"), 1)
	stop := reportCPU(b)
	for b.Loop() {
		if _, err := p.Decode(ring, seed); err != nil {
			b.Fatal(err)
		}
	}
	stop()
}

// TestDDPCountComposition: adaptive clipping's count is a second query on the same clients with
// independent noise; the step's RDP is the vector's plus that of a one-coordinate query of
// sensitivity 1 under the count's shares, at every order. Too few bits for the count is refused.
func TestDDPCountComposition(t *testing.T) {
	for _, mech := range []string{MechanismSkellam, MechanismDDGauss} {
		c := DDPConfig{Mechanism: mech, Bits: 16, Clip: 1, NoiseMultiplier: 1, MinClients: 80, Cohort: 100, CountStddev: 5}
		p, err := c.Params(1000)
		if err != nil {
			t.Fatal(err)
		}
		if want := 4 * 25.0 / 80; p.CountShare != want {
			t.Fatalf("%s: count share %v, want %v", mech, p.CountShare, want)
		}
		with := p.Event(90)
		without := with
		without.CountShare = 0
		count := DiscreteEvent{Mechanism: mech, L1: 1, L2: 1, ShareParam: p.CountShare, Shares: 90, Dim: 1}
		for _, a := range []int{2, 3, 8, 40, 500} {
			if got, want := with.RDP(a), without.RDP(a)+count.RDP(a); got != want || !(count.RDP(a) > 0) {
				t.Fatalf("%s: RDP(%d) = %v with the count, want %v + %v", mech, a, got, without.RDP(a), count.RDP(a))
			}
		}
		e1, _ := NewRDPAccountant(ConversionImproved).EpsilonAfterEvent(DiscreteStep(with, 0.1, 50), 1e-5)
		e0, _ := NewRDPAccountant(ConversionImproved).EpsilonAfterEvent(DiscreteStep(without, 0.1, 50), 1e-5)
		if !(e1.Epsilon > e0.Epsilon) {
			t.Fatalf("%s: ε %v with the count, %v without", mech, e1.Epsilon, e0.Epsilon)
		}
		// The noised count of ~100 clients must fit the ring: 8 bits (±128) cannot hold it.
		c.Bits = 8
		if _, err := c.Params(1000); err == nil || !strings.Contains(err.Error(), "count") {
			t.Fatalf("%s: 8 bits for a count of 100 clients: %v", mech, err)
		}
	}
}

// Under distributed DP every round is its own event (the shares actually summed vary), so the
// accountant must keep every round's curve: it once kept 64, and from round 65 on recomputed
// every past round's curve each round (a 200-round run's rounds grew from 5 s to 20 s). The
// cached answer is the one computed from scratch.
func TestDDPAccountantKeepsEveryRoundsCurve(t *testing.T) {
	c := DDPConfig{Mechanism: MechanismDDGauss, Bits: 16, Clip: 1, NoiseMultiplier: 2, MinClients: 80, Cohort: 100,
		ModClipProb: DefaultModClipProb, CountStddev: 5}
	p, err := c.Params(5000)
	if err != nil {
		t.Fatal(err)
	}
	acc := NewRDPAccountant(ConversionImproved)
	const rounds = 100
	for r := range rounds {
		if err := acc.ComposeEvent(DiscreteStep(p.Event(80+r), 0.1, 1)); err != nil {
			t.Fatal(err)
		}
		if _, err := acc.Epsilon(1e-5); err != nil {
			t.Fatal(err)
		}
	}
	if len(acc.cache) < rounds {
		t.Fatalf("after %d rounds of distinct events the accountant holds %d curves", rounds, len(acc.cache))
	}
	cached, err := acc.Epsilon(1e-5)
	if err != nil {
		t.Fatal(err)
	}
	fresh := NewRDPAccountant(ConversionImproved)
	fresh.events = append(events{}, acc.events...)
	if scratch, err := fresh.Epsilon(1e-5); err != nil || scratch != cached {
		t.Fatalf("cached ε %v, from scratch %v (%v)", cached, scratch, err)
	}
}
