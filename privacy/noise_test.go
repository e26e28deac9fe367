package privacy

import (
	"errors"
	"math"
	"math/big"
	"testing"
)

// moments accumulates mean, variance, tail and sign counts of integer samples.
type moments struct {
	n, pos, neg, zero int
	sum, sumSq        float64
	tail              []int // counts of |x| > thresholds[i]
	thresholds        []float64
}

func newMoments(thresholds ...float64) *moments {
	return &moments{thresholds: thresholds, tail: make([]int, len(thresholds))}
}

func (m *moments) add(x float64) {
	m.n++
	m.sum += x
	m.sumSq += x * x
	switch {
	case x > 0:
		m.pos++
	case x < 0:
		m.neg++
	default:
		m.zero++
	}
	for i, t := range m.thresholds {
		if math.Abs(x) > t {
			m.tail[i]++
		}
	}
}

// check asserts, at about five standard errors, that the samples look like N(0, σ²): mean,
// variance, two-sided tails at the thresholds, and symmetry of signs.
func (m *moments) check(t *testing.T, name string, sigma float64) {
	t.Helper()
	n := float64(m.n)
	mean := m.sum / n
	if se := sigma / math.Sqrt(n); math.Abs(mean) > 5*se {
		t.Errorf("%s: mean %.4g, want 0 ± %.3g", name, mean, 5*se)
	}
	variance := m.sumSq/n - mean*mean
	// Var of the sample variance of a normal is 2σ⁴/n.
	if se := sigma * sigma * math.Sqrt(2/n); math.Abs(variance-sigma*sigma) > 5*se {
		t.Errorf("%s: variance %.6g, want %.6g ± %.3g (σ ratio %.5f)", name, variance, sigma*sigma, 5*se, math.Sqrt(variance)/sigma)
	}
	for i, thr := range m.thresholds {
		p := math.Erfc(thr / sigma / math.Sqrt2)
		got := float64(m.tail[i]) / n
		if se := math.Sqrt(p * (1 - p) / n); math.Abs(got-p) > 5*se+1/n {
			t.Errorf("%s: P[|X| > %.3g] = %.5g, want %.5g ± %.2g", name, thr, got, p, 5*se)
		}
	}
	if d, se := float64(m.pos-m.neg), math.Sqrt(float64(m.pos+m.neg)); math.Abs(d) > 5*se {
		t.Errorf("%s: %d positive vs %d negative samples: asymmetric", name, m.pos, m.neg)
	}
}

func TestAliasTableRepresentsDiscreteGaussianExactly(t *testing.T) {
	tab := getBaseTable()
	// Rebuild each value's probability from the table: bucket i gives thr[i] to itself and
	// 2¹²⁴ − thr[i] to its alias; the sum must be exactly the weight it was built from.
	got := make([]u128, len(baseWeights))
	capacity := u128{hi: 1 << 60}
	for i := range aliasSize {
		thr := u128{hi: uint64(tab.hot[i].thr)<<(thresholdShift-64) | tab.thrCold[i].hi, lo: tab.thrCold[i].lo}
		if i < len(got) {
			got[i] = got[i].add(thr)
		}
		a := int(tab.hot[i].alias) + baseTail
		if a < 0 || a >= len(got) {
			t.Fatalf("bucket %d aliases value %d outside the support", i, tab.hot[i].alias)
		}
		got[a] = got[a].add(capacity.sub(thr))
	}
	for i := range got {
		if got[i] != baseWeights[i] {
			t.Fatalf("value %d: table gives %v, weights say %v", i-baseTail, got[i], baseWeights[i])
		}
	}
	// And the weights are the discrete Gaussian: compare to a float64 computation.
	var z float64
	for k := -baseTail; k <= baseTail; k++ {
		z += math.Exp(-float64(k*k) / (2 * baseSigma * baseSigma))
	}
	for _, k := range []int{0, 1, 100, 2048, 5000, 10000, 20000, 28000} {
		w := baseWeights[k+baseTail]
		f, _ := new(big.Float).SetMantExp(new(big.Float).SetInt(new(big.Int).Or(new(big.Int).Lsh(new(big.Int).SetUint64(w.hi), 64), new(big.Int).SetUint64(w.lo))), -140).Float64()
		want := math.Exp(-float64(k*k)/(2*baseSigma*baseSigma)) / z
		if math.Abs(f-want) > 1e-12*want+0x1p-139 { // weights are multiples of 2⁻¹⁴⁰
			t.Errorf("P[X=%d] = %.15g, want %.15g", k, f, want)
		}
	}
}

func TestBaseSamplerStatistics(t *testing.T) {
	src := NewSeededSource(1)
	tab := getBaseTable()
	m := newMoments(baseSigma, 2*baseSigma, 3*baseSigma, 4*baseSigma)
	for range 1 << 20 {
		m.add(float64(sampleBase(tab, src)))
	}
	m.check(t, "base sampler", baseSigma)
}

func TestDiscreteGaussianStatistics(t *testing.T) {
	src := NewSeededSource(2)
	out := make([]int64, 1<<20)
	fillDiscreteGaussian(out, src)
	m := newMoments(latticeSigma, 2*latticeSigma, 3*latticeSigma, 4*latticeSigma)
	for _, k := range out {
		m.add(float64(k))
	}
	m.check(t, "fillDiscreteGaussian", latticeSigma)

	single := newMoments(latticeSigma, 3*latticeSigma)
	for range 1 << 18 {
		single.add(float64(SampleDiscreteGaussian(src)))
	}
	single.check(t, "SampleDiscreteGaussian", latticeSigma)

	// Finer shape: a χ² test over 40 equiprobable bins of the normal distribution.
	const bins = 40
	counts := make([]float64, bins)
	for _, k := range out {
		u := 0.5 * math.Erfc(-float64(k)/latticeSigma/math.Sqrt2)
		b := min(int(u*bins), bins-1)
		counts[b]++
	}
	exp := float64(len(out)) / bins
	var chi2 float64
	for _, c := range counts {
		chi2 += (c - exp) * (c - exp) / exp
	}
	// 39 degrees of freedom: P[χ² > 80] ≈ 1e-4.
	if chi2 > 80 {
		t.Errorf("χ² over %d bins = %.1f: not a Gaussian of σ = %.4g", bins, chi2, latticeSigma)
	}
}

// TestConvolutionLemma checks the bound the fast sampler rests on, on small parameters where the
// deviation is visible in float64: X₁ + tX₂ with X_i ~ N_Z(0, σ₀²) has a pmf within a factor
// e^{±2·2.1·e^{−2π²w²}} of N_Z(0, σ₀²(1+t²)), w = σ₀/√(1+t²).
func TestConvolutionLemma(t *testing.T) {
	for _, tc := range []struct {
		sigma0 float64
		t      int
	}{{6, 9}, {8, 9}, {10, 6}, {16, 7}, {12, 4}} {
		w := tc.sigma0 / math.Sqrt(1+float64(tc.t*tc.t))
		bound := 2 * 2.1 * math.Exp(-2*math.Pi*math.Pi*w*w)
		tail := int(14 * tc.sigma0)
		base := make([]float64, 2*tail+1)
		var z float64
		for k := -tail; k <= tail; k++ {
			base[k+tail] = math.Exp(-float64(k*k) / (2 * tc.sigma0 * tc.sigma0))
			z += base[k+tail]
		}
		for i := range base {
			base[i] /= z
		}
		sigma2 := tc.sigma0 * tc.sigma0 * (1 + float64(tc.t*tc.t))
		// Target normaliser over a wide range.
		var zt float64
		lim := int(12 * math.Sqrt(sigma2))
		for k := -lim; k <= lim; k++ {
			zt += math.Exp(-float64(k*k) / (2 * sigma2))
		}
		var maxLog float64
		for k := -lim / 2; k <= lim/2; k++ { // where both pmfs are far above rounding noise
			var p float64
			for j := -tail; j <= tail; j++ {
				i := k - tc.t*j
				if i >= -tail && i <= tail {
					p += base[i+tail] * base[j+tail]
				}
			}
			q := math.Exp(-float64(k*k)/(2*sigma2)) / zt
			maxLog = max(maxLog, math.Abs(math.Log(p/q)))
		}
		if maxLog > bound+1e-10 {
			t.Errorf("σ₀=%v t=%d (w=%.2f): max |log p/q| = %.3g exceeds the bound %.3g", tc.sigma0, tc.t, w, maxLog, bound)
		}
		// The bound is not vacuous: where it is large, the deviation is of its order.
		if bound > 1e-6 && maxLog < bound/10 {
			t.Errorf("σ₀=%v t=%d (w=%.2f): deviation %.3g far below bound %.3g: check the lemma", tc.sigma0, tc.t, w, maxLog, bound)
		}
	}
	// The production parameters.
	w := float64(baseSigma) / math.Sqrt(1+convStride*convStride)
	if w < 2 {
		t.Fatalf("production w = %v < 2", w)
	}
}

func TestGaussianNoiseIsOnLatticeAndCalibrated(t *testing.T) {
	const d = 1 << 18
	g, err := NewGaussianNoise(0.37, 0.5, d)
	if err != nil {
		t.Fatal(err)
	}
	// The realised σ exceeds the request by exactly the rounding allowance.
	z := 0.37 / 0.5
	wantSigma := 0.37 / (1 - 1.25*z*math.Sqrt(d)/latticeSigma)
	if math.Abs(g.Sigma()-wantSigma) > 1e-12*wantSigma || g.Sigma() < 0.37 {
		t.Fatalf("Sigma() = %v, want %v", g.Sigma(), wantSigma)
	}
	// Effective noise multiplier with the rounding allowance is the requested one.
	if eff := g.Sigma() / (0.5 + 1.25*g.Step()*math.Sqrt(d)); math.Abs(eff-z) > 1e-12 {
		t.Fatalf("effective multiplier %v, want %v", eff, z)
	}
	x := make([]float64, d)
	for i := range x {
		x[i] = 0.01 * float64(i%17-8)
	}
	lat, err := g.lattice64(x, NewSeededSource(3))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, d)
	if err := g.Add64(out, x, NewSeededSource(3)); err != nil {
		t.Fatal(err)
	}
	m := newMoments(g.Sigma(), 2*g.Sigma(), 3*g.Sigma())
	for i := range x {
		if out[i] != float32(float64(lat[i])*g.Step()) {
			t.Fatalf("coordinate %d: output %v is not the lattice point %d·γ", i, out[i], lat[i])
		}
		m.add(float64(lat[i])*g.Step() - x[i])
	}
	m.check(t, "Add64 noise", g.Sigma())

	// Add32 in place agrees with Add64 on the same randomness.
	x32 := make([]float32, d)
	for i := range x32 {
		x32[i] = float32(x[i])
	}
	x64 := make([]float64, d)
	for i := range x32 {
		x64[i] = float64(x32[i])
	}
	want := make([]float32, d)
	if err := g.Add64(want, x64, NewSeededSource(4)); err != nil {
		t.Fatal(err)
	}
	if err := g.Add32(x32, x32, NewSeededSource(4)); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if want[i] != x32[i] {
			t.Fatalf("Add32 in place differs from Add64 at %d: %v vs %v", i, x32[i], want[i])
		}
	}
}

// TestNoMironovLeak: the attack distinguishes x from x′ by which outputs are reachable. Here the
// released integers (before scaling) from x and from x′ = x + ε (same rounding) are identically
// distributed, so with the same randomness they are identical.
func TestNoMironovLeak(t *testing.T) {
	g, err := NewGaussianNoise(1, 1, 4)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := g.lattice64([]float64{0.25, 1e-9, -3, 7}, NewSeededSource(9))
	b, _ := g.lattice64([]float64{0.25 + 1e-12, 2e-9, -3 - 1e-10, 7}, NewSeededSource(9))
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("coordinate %d: %d vs %d: output depends on sub-lattice bits of the input", i, a[i], b[i])
		}
	}
}

func TestGaussianNoiseBadInput(t *testing.T) {
	for _, tc := range []struct {
		sigma, sens float64
		dim         int
	}{{0, 1, 1}, {-1, 1, 1}, {math.NaN(), 1, 1}, {math.Inf(1), 1, 1}, {1, 0, 1}, {1, math.NaN(), 1}, {1, 1, 0}, {1e6, 1, 1 << 20}} {
		if _, err := NewGaussianNoise(tc.sigma, tc.sens, tc.dim); err == nil {
			t.Errorf("NewGaussianNoise(%v, %v, %v): no error", tc.sigma, tc.sens, tc.dim)
		}
	}
	g, _ := NewGaussianNoise(1, 1, 3)
	src := NewSeededSource(0)
	if err := g.Add64(make([]float32, 3), []float64{1, math.NaN(), 2}, src); !errors.Is(err, ErrNonFinite) {
		t.Errorf("NaN input: err = %v, want ErrNonFinite", err)
	}
	if err := g.Add32(make([]float32, 3), []float32{1, float32(math.Inf(-1)), 2}, src); !errors.Is(err, ErrNonFinite) {
		t.Errorf("Inf input: err = %v, want ErrNonFinite", err)
	}
	// A bad value late in a long vector noised in place leaves the vector untouched.
	big, _ := NewGaussianNoise(1, 1, 5000)
	v := make([]float32, 5000)
	v[4999] = float32(math.NaN())
	if err := big.Add32(v, v, src); !errors.Is(err, ErrNonFinite) || v[0] != 0 || v[4000] != 0 {
		t.Errorf("in-place noise of a vector with a late NaN: err = %v, v[0] = %v: input modified", err, v[0])
	}
	if err := g.Add64(make([]float32, 3), []float64{1, 2}, src); err == nil {
		t.Error("wrong dimension: no error")
	}
	if err := g.Add64(make([]float32, 3), []float64{1, 1e300, 2}, src); err == nil {
		t.Error("value beyond the lattice range: no error")
	}
}

func TestSeededSourceReproducibleAndDistinct(t *testing.T) {
	a, b, c := NewSeededSource(5), NewSeededSource(5), NewSeededSource(6)
	if !a.Deterministic() {
		t.Error("seeded source not marked deterministic")
	}
	same, diff := true, false
	for range 1000 {
		x, y, w := a.Uint64(), b.Uint64(), c.Uint64()
		same = same && x == y
		diff = diff || x != w
	}
	if !same || !diff {
		t.Errorf("seeded sources: same seed equal = %v, different seeds differ = %v", same, diff)
	}
	s, err := NewSource()
	if err != nil {
		t.Fatal(err)
	}
	if s.Deterministic() {
		t.Error("crypto/rand source marked deterministic")
	}
}

func TestRoundHalfEven(t *testing.T) {
	for _, c := range []float64{0, 0.5, 1.5, 2.5, -0.5, -1.5, 0.49999999999999994, -2.7, 3.2, 1<<50 - 0.5, -(1 << 50) + 0.5, 123456.5, 1e15 + 0.25} {
		if got, want := roundHalfEven(c), int64(math.RoundToEven(c)); got != want {
			t.Errorf("roundHalfEven(%v) = %d, want %d", c, got, want)
		}
	}
}

func TestExactDiscreteGaussianStatistics(t *testing.T) {
	src := NewSeededSource(21)
	// Moments and tails at σ₀² (where the lattice is fine enough for normal tails to apply).
	m := newMoments(baseSigma, 2*baseSigma, 3*baseSigma)
	for range 20000 {
		k, err := SampleDiscreteGaussianExact(baseSigma*baseSigma, src)
		if err != nil {
			t.Fatal(err)
		}
		m.add(float64(k))
	}
	m.check(t, "exact sampler σ = 2048", baseSigma)
	// σ² = 1: P[0], P[±1], P[±2] against exp(−k²/2)/Z.
	counts := map[int64]int{}
	const n = 100000
	for range n {
		k, _ := SampleDiscreteGaussianExact(1, src)
		counts[k]++
	}
	var z float64
	for k := -20; k <= 20; k++ {
		z += math.Exp(-float64(k*k) / 2)
	}
	for k := int64(-3); k <= 3; k++ {
		p := math.Exp(-float64(k*k)/2) / z
		got := float64(counts[k]) / n
		if se := math.Sqrt(p * (1 - p) / n); math.Abs(got-p) > 5*se {
			t.Errorf("exact sampler σ²=1: P[%d] = %.5f, want %.5f ± %.5f", k, got, p, 5*se)
		}
	}
	if _, err := SampleDiscreteGaussianExact(0, src); err == nil {
		t.Error("σ² = 0 accepted")
	}
}

// The fast sampler and the exact one agree on the base distribution: a two-sample test on
// binned draws of N_Z(0, σ₀²).
func TestFastBaseMatchesExactSampler(t *testing.T) {
	src := NewSeededSource(22)
	tab := getBaseTable()
	const n = 20000
	bin := func(k int64) int { return min(9, int(math.Abs(float64(k))/(0.5*baseSigma))) }
	var fast, exact [10]float64
	for range n {
		fast[bin(int64(sampleBase(tab, src)))]++
		k, _ := SampleDiscreteGaussianExact(baseSigma*baseSigma, src)
		exact[bin(k)]++
	}
	var chi2 float64
	for i := range fast {
		if s := fast[i] + exact[i]; s > 0 {
			chi2 += (fast[i] - exact[i]) * (fast[i] - exact[i]) / s
		}
	}
	// 9 degrees of freedom: P[χ² > 33] ≈ 1e-4.
	if chi2 > 33 {
		t.Errorf("fast vs exact sampler: χ² = %.1f over %v vs %v", chi2, fast, exact)
	}
}

// The exact sampler's building blocks: Bernoulli(e^{−γ}) and the discrete Laplace.
func TestExactSamplerBuildingBlocks(t *testing.T) {
	src := NewSeededSource(23)
	const n = 100000
	for _, g := range [][2]int64{{3, 10}, {17, 10}, {0, 1}, {5, 2}} {
		hits := 0
		for range n {
			if bernoulliExpNeg(big.NewInt(g[0]), big.NewInt(g[1]), src) {
				hits++
			}
		}
		p := math.Exp(-float64(g[0]) / float64(g[1]))
		if se := math.Sqrt(p*(1-p)/n) + 1e-12; math.Abs(float64(hits)/n-p) > 5*se {
			t.Errorf("Bernoulli(exp(−%d/%d)) rate %.5f, want %.5f", g[0], g[1], float64(hits)/n, p)
		}
	}
	const scale = 3
	counts := map[int64]int{}
	for range n {
		counts[sampleDiscreteLaplace(scale, src)]++
	}
	z := (1 + math.Exp(-1.0/scale)) / (1 - math.Exp(-1.0/scale))
	for y := int64(-4); y <= 4; y++ {
		p := math.Exp(-math.Abs(float64(y))/scale) / z
		if se := math.Sqrt(p * (1 - p) / n); math.Abs(float64(counts[y])/n-p) > 5*se {
			t.Errorf("discrete Laplace(t=3): P[%d] = %.5f, want %.5f", y, float64(counts[y])/n, p)
		}
	}
	for range 1000 {
		if u := uniformBelow(7, src); u >= 7 {
			t.Fatalf("uniformBelow(7) = %d", u)
		}
	}
}
