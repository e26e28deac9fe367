package privacy

import (
	"math"
	"sync"
)

// Table samplers for the noise shares (the encoder's hot loop). A client draws hundreds of
// thousands of values of one fixed distribution per round, so the distribution is tabulated once:
// the bulk of the support — the values of probability ≥ 2⁻²⁰ — as a cumulative table of 64-bit
// fixed-point thresholds searched from a guide table (Chen and Asau 1974; about one comparison
// per draw from one 64-bit uniform), and each tail beyond by an exact rejection sampler from a
// geometric proposal (both distributions are log-concave, so p(e+j)/p(e) ≤ r^j with r the
// ratio at the table's edge e). Every value keeps its probability up to the float64 error of its
// pmf plus the rounding of its 64-bit share: relative ≤ 2⁻⁶⁴/2⁻²⁰ = 2⁻⁴⁴ in the table, checked
// at build time (maxRelErr), and the tails' total masses are rounded the same way (a table is
// used only when each nonempty tail holds ≥ 2⁻⁴⁰). The randomness is the Source's (AES-CTR keyed
// from crypto/rand); no floating-point value reaches the update.

const (
	tableMinLogP   = -20 * math.Ln2 // table entries: p(k) ≥ 2⁻²⁰
	tableMaxSize   = 1 << 18
	tableMinTail   = 0x1p-40
	tableGuideBits = 12
)

type tableSampler struct {
	lo        int64    // value of table entry 1
	cum       []uint64 // cum[0]: lower tail; cum[i], i = 1..n: through value lo+i−1; upper tail after
	guide     []uint32
	shift     uint
	lower     func(*Source) int64 // exact sampler of the lower tail (nil if empty)
	upper     func(*Source) int64
	maxRelErr float64 // largest relative error of a table entry's or tail's probability from rounding
}

// newTableSampler tabulates the distribution with log-pmf logp (normalised up to float64 error,
// log-concave, mode at mode), or returns nil when it is too wide or too narrow for a table.
// minK is the smallest value of the support (math.MinInt64 for none).
func newTableSampler(logp func(k int64) float64, mode, minK int64, lower, upper func(*Source) int64) *tableSampler {
	// The wide range: values within 2⁻⁸⁰ of the mode's probability (the rest is below 10⁻²⁴ relative).
	lmode := logp(mode)
	if lmode < tableMinLogP {
		return nil
	}
	cut := lmode - 80*math.Ln2
	a, b := mode, mode
	for a > minK && logp(a-1) >= cut {
		a--
		if mode-a > 16*tableMaxSize {
			return nil
		}
	}
	for logp(b+1) >= cut {
		b++
		if b-mode > 16*tableMaxSize {
			return nil
		}
	}
	w := make([]float64, b-a+1)
	var z float64
	for i := range w {
		w[i] = math.Exp(logp(a + int64(i)))
		z += w[i]
	}
	lo, hi := mode, mode
	for lo > a && logp(lo-1) >= tableMinLogP {
		lo--
	}
	for hi < b && logp(hi+1) >= tableMinLogP {
		hi++
	}
	n := int(hi - lo + 1)
	if n > tableMaxSize {
		return nil
	}
	var lMass, uMass float64
	for k := a; k < lo; k++ {
		lMass += w[k-a] / z
	}
	for k := hi + 1; k <= b; k++ {
		uMass += w[k-a] / z
	}
	lowerEmpty := lo == minK
	if (!lowerEmpty && lMass < tableMinTail) || uMass < tableMinTail {
		return nil
	}
	t := &tableSampler{lo: lo, cum: make([]uint64, n+1), lower: lower, upper: upper}
	share := func(p float64) uint64 { return uint64(math.Round(math.Ldexp(p, 64))) }
	relErr := func(got uint64, p float64) float64 { return math.Abs(math.Ldexp(float64(got), -64)-p) / p }
	var c uint64
	if !lowerEmpty {
		c = share(lMass)
		t.maxRelErr = relErr(c, lMass)
	}
	t.cum[0] = c
	// Every share is rounded on its own; the mode's entry takes what remains of 2⁶⁴, so that the
	// float64 error of the normalisation (~10⁻¹⁶ absolute) lands on the largest probability.
	uGot := share(uMass)
	t.maxRelErr = max(t.maxRelErr, relErr(uGot, uMass))
	shares := make([]uint64, n+1)
	var rest uint64 = c + uGot
	for i := 1; i <= n; i++ {
		if lo+int64(i)-1 != mode {
			shares[i] = share(w[lo+int64(i)-1-a] / z)
			rest += shares[i]
		}
	}
	shares[mode-lo+1] = -rest // 2⁶⁴ − the others
	for i := 1; i <= n; i++ {
		t.maxRelErr = max(t.maxRelErr, relErr(shares[i], w[lo+int64(i)-1-a]/z))
		c += shares[i]
		t.cum[i] = c
	}
	// Guide: guide[j] is the first entry whose threshold exceeds j·2^shift.
	t.shift = 64 - tableGuideBits
	t.guide = make([]uint32, 1<<tableGuideBits)
	i := 0
	for j := range t.guide {
		v := uint64(j) << t.shift
		for i <= n && t.cum[i] <= v {
			i++
		}
		t.guide[j] = uint32(i)
	}
	return t
}

func (t *tableSampler) sample(src *Source) int64 {
	u := src.Uint64()
	i := int(t.guide[u>>t.shift])
	n := len(t.cum) - 1
	for i <= n && t.cum[i] <= u {
		i++
	}
	switch {
	case i == 0:
		return t.lower(src)
	case i > n:
		return t.upper(src)
	}
	return t.lo + int64(i) - 1
}

// geometric returns j ≥ 0 with P(j) = (1−r)·r^j, 0 < r < 1.
func geometric(src *Source, logR float64) int64 {
	return int64(math.Floor(math.Log(uniform53(src)) / logR))
}

// newDGaussTable tabulates N_Z(0, σ²); its tails beyond ±e by rejection from a geometric
// proposal: p(e+1+j)/p(e+1) = exp(−(j² + 2j(e+1))/(2σ²)) ≤ r^j, r = e^{−(e+1)/σ²}, accepted
// with probability exp(−j²/(2σ²)).
func newDGaussTable(sigma2 float64) *tableSampler {
	s := math.Sqrt(sigma2)
	if math.Log(s*math.Sqrt(2*math.Pi)) > -tableMinLogP+1 {
		return nil // even the mode has probability below 2⁻²⁰
	}
	var z float64
	for k := -int64(40*s) - 1; k <= int64(40*s)+1; k++ {
		z += math.Exp(-float64(k*k) / (2 * sigma2))
	}
	logZ := math.Log(z)
	logp := func(k int64) float64 { return -float64(k*k)/(2*sigma2) - logZ }
	var edge int64
	tail := func(src *Source) int64 {
		e := float64(edge + 1)
		logR := -e / sigma2
		for {
			j := geometric(src, logR)
			fj := float64(j)
			if uniform53(src) <= math.Exp(-fj*fj/(2*sigma2)) {
				return edge + 1 + j
			}
		}
	}
	t := newTableSampler(logp, 0, math.MinInt64, func(src *Source) int64 { return -tail(src) }, tail)
	if t == nil {
		return nil
	}
	edge = t.lo + int64(len(t.cum)-1) - 1 // the table is symmetric: [−edge, edge]
	if t.lo != -edge {
		return nil
	}
	return t
}

// newPoissonTable tabulates Poisson(μ). Upper tail from h = hi+1: p(h+j)/p(h) = Π_{i=1..j}
// μ/(h+i) ≤ r^j, r = μ/(h+1), accepted with Π (h+1)/(h+i); lower tail from h = lo−1 down:
// p(h−j)/p(h) = Π_{i=0..j−1} (h−i)/μ ≤ (h/μ)^j, accepted with Π (h−i)/h (j ≤ h).
func newPoissonTable(mu float64) *tableSampler {
	logMu := math.Log(mu)
	logp := func(k int64) float64 {
		if k < 0 {
			return math.Inf(-1)
		}
		lg, _ := math.Lgamma(float64(k) + 1)
		return float64(k)*logMu - mu - lg
	}
	var lo, hi int64
	upper := func(src *Source) int64 {
		h := float64(hi + 1)
		lgH, _ := math.Lgamma(h + 1)
		logR := logMu - math.Log(h+1)
		for {
			j := geometric(src, logR)
			fj := float64(j)
			lg, _ := math.Lgamma(h + fj + 1)
			if math.Log(uniform53(src)) <= fj*math.Log(h+1)-(lg-lgH) {
				return hi + 1 + j
			}
		}
	}
	lower := func(src *Source) int64 {
		if lo == 1 {
			return 0 // the lower tail is {0}
		}
		h := float64(lo - 1)
		lgH, _ := math.Lgamma(h + 1)
		logR := math.Log(h) - logMu
		for {
			j := geometric(src, logR)
			if j > lo-1 {
				continue
			}
			fj := float64(j)
			lg, _ := math.Lgamma(h - fj + 1)
			if math.Log(uniform53(src)) <= (lgH-lg)-fj*math.Log(h) {
				return lo - 1 - j
			}
		}
	}
	t := newTableSampler(logp, int64(math.Floor(mu)), 0, lower, upper)
	if t == nil {
		return nil
	}
	lo, hi = t.lo, t.lo+int64(len(t.cum)-1)-1
	return t
}

// Tables are cached by distribution: a run's parameters are fixed, so every round reuses them.
var tableCache struct {
	sync.Mutex
	m map[tableKey]*tableSampler
}

type tableKey struct {
	kind  string
	param float64
}

func cachedTable(kind string, param float64, build func() *tableSampler) *tableSampler {
	tableCache.Lock()
	defer tableCache.Unlock()
	k := tableKey{kind, param}
	if t, ok := tableCache.m[k]; ok {
		return t
	}
	if tableCache.m == nil || len(tableCache.m) >= 16 {
		tableCache.m = map[tableKey]*tableSampler{}
	}
	t := build()
	tableCache.m[k] = t
	return t
}

// addTo adds one draw to every entry of q (subtracts it when neg): the table's lookup on 64-bit
// uniforms read from the keystream in blocks, without a call per value.
func (t *tableSampler) addTo(q []int64, src *Source, neg bool) {
	var rnd [randChunk]uint64
	n := len(t.cum) - 1
	cum := t.cum
	for base := 0; base < len(q); base += randChunk {
		qs := q[base:min(base+randChunk, len(q))]
		rs := rnd[:len(qs)]
		src.uint64s(rs)
		for i, u := range rs {
			j := int(t.guide[u>>t.shift])
			for j <= n && cum[j] <= u {
				j++
			}
			var v int64
			switch {
			case j == 0:
				v = t.lower(src)
			case j > n:
				v = t.upper(src)
			default:
				v = t.lo + int64(j) - 1
			}
			if neg {
				v = -v
			}
			qs[i] += v
		}
	}
}

// skellamBesselPMF returns P(k) for k = 0, …, K of Skellam(μ, μ) = Poisson(μ) − Poisson(μ), P(k) =
// e^{−2μ}·I_k(2μ) (symmetric), with K where P(K)/P(0) < 2⁻¹³⁰. Go's math has no Bessel I_k, so
// it runs Miller's backward recurrence I_{k−1}(x) = (2k/x)·I_k(x) + I_{k+1}(x) from N > K,
// which is stable downwards (I_k is the dominant solution there), and normalises with
// Σ_k P(k) = 1, i.e. e^x = I_0(x) + 2·Σ_{k≥1} I_k(x). Starting at N with N² − K² ≥ 60x bounds
// the start's relative error at every k ≤ K by e^{(k²−N²)/x} ≤ e^{−60}.
func skellamBesselPMF(mu float64) []float64 {
	x := 2 * mu
	K := int(math.Ceil(math.Sqrt(2*x*130*math.Ln2))) + 40
	N := int(math.Ceil(math.Sqrt(float64(K)*float64(K)+60*x))) + 30
	r := make([]float64, N+2)
	r[N] = 1
	for k := N; k >= 1; k-- {
		r[k-1] = 2*float64(k)/x*r[k] + r[k+1]
		if r[k-1] > 1e200 {
			for i := k - 1; i <= N; i++ {
				r[i] *= 1e-200
			}
		}
	}
	var s float64
	for k := N; k >= 1; k-- {
		s += 2 * r[k]
	}
	s += r[0]
	p := make([]float64, K+1)
	for k := range p {
		p[k] = r[k] / s
	}
	return p
}

// skellamPMFDirect is P(k) of Skellam(μ, μ) as Σ_j Poisson(j)·Poisson(j+|k|), summed from its
// largest term outwards until the terms fall below 2⁻⁸⁰ of it: for values beyond skellamPMF's
// range, which a tail's geometric proposal reaches with probability below 2⁻¹⁰⁰.
func skellamPMFDirect(mu float64, k int64) float64 {
	if k < 0 {
		k = -k
	}
	fk, logMu := float64(k), math.Log(mu)
	term := func(j float64) float64 {
		a, _ := math.Lgamma(j + 1)
		b, _ := math.Lgamma(j + fk + 1)
		return -2*mu + (2*j+fk)*logMu - a - b
	}
	peak := math.Max(0, math.Floor((-fk+math.Sqrt(fk*fk+4*mu*mu))/2))
	top := term(peak)
	cut := top - 80*math.Ln2
	sum := 1.0
	for j := peak + 1; ; j++ {
		l := term(j)
		if l < cut {
			break
		}
		sum += math.Exp(l - top)
	}
	for j := peak - 1; j >= 0; j-- {
		l := term(j)
		if l < cut {
			break
		}
		sum += math.Exp(l - top)
	}
	return math.Exp(top) * sum
}

// newSkellamTable tabulates Skellam(μ, μ), one draw per share instead of two Poisson draws.
// The tails beyond ±e by rejection from a geometric proposal: Skellam is log-concave (a
// convolution of log-concave sequences), so P(h+j)/P(h) ≤ r^j with h = e+1, r = P(h+1)/P(h),
// accepted with probability P(h+j)/(P(h)·r^j).
func newSkellamTable(mu float64) *tableSampler {
	if !(mu > 0) || 2*mu > 1e9 {
		return nil // a Bessel array of more than ~10⁶ entries: the Poisson tables instead
	}
	pmf := skellamBesselPMF(mu)
	K := int64(len(pmf) - 1)
	at := func(k int64) float64 {
		if k < 0 {
			k = -k
		}
		if k <= K {
			return pmf[k]
		}
		return skellamPMFDirect(mu, k)
	}
	logp := func(k int64) float64 {
		if k < -K || k > K {
			return math.Inf(-1)
		}
		return math.Log(at(k))
	}
	var edge int64
	tail := func(src *Source) int64 {
		h := edge + 1
		logPh := math.Log(at(h))
		logR := math.Log(at(h+1)) - logPh
		for {
			j := geometric(src, logR)
			if math.Log(uniform53(src)) <= math.Log(at(h+j))-logPh-float64(j)*logR {
				return h + j
			}
		}
	}
	t := newTableSampler(logp, 0, math.MinInt64, func(src *Source) int64 { return -tail(src) }, tail)
	if t == nil {
		return nil
	}
	edge = t.lo + int64(len(t.cum)-1) - 1
	if t.lo != -edge {
		return nil
	}
	return t
}
