package privacy

import (
	"encoding/json"
	"fmt"
	"math"

	"gonum.org/v1/gonum/dsp/fourier"
)

// Privacy-loss-distribution (PLD) accounting for the Poisson-subsampled Gaussian mechanism.
//
// For a pair of output distributions (P, Q) the privacy loss L = log(P/Q)(x), x ~ P, gives the
// tight curve δ(ε) = E_P[(1 − e^{ε−L})₊] (+ the P-mass where Q = 0), and composing mechanisms
// adds independent losses, so the PLD of T steps is the T-fold convolution of one step's.
// Under add/remove adjacency the worst pairs for one step are (M, N₀) ("remove") and (N₀, M)
// ("add"), with N₀ = N(0, z²), M = (1−q)N₀ + qN(1, z²); a run reports the larger ε of the two.
//
// Discretisation ("connect the dots", Doroshenko, Ghazi, Kamath, Kumar, Manurangsi 2022): the
// losses of one step are put on the grid iΔ by splitting the mass of each interval (l_i, l_{i+1}]
// between its two end points so that both its P-mass and its Q-mass (E_P[e^{−L}]) are kept. The
// resulting curve δ(ε) is the chord of the true convex curve (in e^ε) between grid points, hence
// above it everywhere: the discrete pair dominates the real one, and dominance survives
// composition (Zhu, Dong, Wang 2022), so the composed discrete PLD never under-reports δ or ε.
// Every other approximation moves loss upwards, which can only increase δ(ε): the tails beyond
// ±(a 10⁻¹⁸ quantile) of one step go to the lowest grid point or to +∞, and the composition's
// window is sized by Chernoff bounds whose tail mass is added to +∞ (see compose). The one
// error not bounded rigorously is floating-point rounding in the FFT, ~10⁻¹⁶ relative to the
// largest probabilities; tests check the result against exact compositions.

// DefaultPLDDiscretization is the default grid step Δ of privacy-loss values. It is coarsened
// automatically when the composed distribution would need more than pldMaxPoints grid points.
const DefaultPLDDiscretization = 1e-4

const (
	pldTail      = 1e-18   // tail mass of one step beyond its grid
	pldMaxPoints = 1 << 19 // grid points of a composed PLD before Δ is coarsened
)

// lossPMF is a discrete PLD on the grid: p[j] is the probability of loss (offset+j)·Δ, inf
// the probability of loss +∞.
type lossPMF struct {
	offset int
	p      []float64
	inf    float64
}

// normInterval returns P[a < N(0,1) ≤ b] without cancellation in the tails.
func normInterval(a, b float64) float64 {
	if a >= b {
		return 0
	}
	if a > 0 {
		return 0.5 * (math.Erfc(a/math.Sqrt2) - math.Erfc(b/math.Sqrt2))
	}
	if b < 0 {
		return 0.5 * (math.Erfc(-b/math.Sqrt2) - math.Erfc(-a/math.Sqrt2))
	}
	return 1 - 0.5*math.Erfc(-a/math.Sqrt2) - 0.5*math.Erfc(b/math.Sqrt2)
}

// normUpperQuantile returns k with P[N(0,1) > k] = p for small p, by bisection on Erfc
// (math.Erfcinv loses all precision below 1e-16: it goes through 1 − p).
func normUpperQuantile(p float64) float64 {
	lo, hi := 0.0, 40.0
	for range 200 {
		mid := (lo + hi) / 2
		if 0.5*math.Erfc(mid/math.Sqrt2) > p {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

// gaussianPLDStep is one step's loss for one direction, through its monotone map from the
// Gaussian coordinate x: xAt gives the x where L(x) = l, and intervals P/Q of x-ranges.
type gaussianPLDStep struct {
	q, z   float64
	remove bool // P = M, Q = N₀ (loss increasing in x); else P = N₀, Q = M (decreasing)
}

// lossAt is L(x).
func (s gaussianPLDStep) lossAt(x float64) float64 {
	u := (2*x - 1) / (2 * s.z * s.z)
	var l float64 // log((1−q) + q e^u)
	if s.q == 1 {
		l = u
	} else {
		a, b := math.Log1p(-s.q), math.Log(s.q)+u
		if a > b {
			l = a + math.Log1p(math.Exp(b-a))
		} else {
			l = b + math.Log1p(math.Exp(a-b))
		}
	}
	if s.remove {
		return l
	}
	return -l
}

// xAt inverts lossAt: the x with L(x) = l, ±Inf where l is outside the range of L.
func (s gaussianPLDStep) xAt(l float64) float64 {
	t := l // log((1−q) + q e^u) = t
	if !s.remove {
		t = -l
	}
	var u float64
	if s.q == 1 {
		u = t
	} else {
		// e^u = (e^t − (1−q))/q, defined for t > log(1−q).
		d := math.Expm1(t) + s.q // e^t − 1 + q
		if d <= 0 {
			if s.remove {
				return math.Inf(-1)
			}
			return math.Inf(1)
		}
		u = math.Log(d / s.q)
	}
	return s.z*s.z*u + 0.5
}

// massPQ returns the P- and Q-mass of the x-interval (a, b].
func (s gaussianPLDStep) massPQ(a, b float64) (p, qm float64) {
	z := s.z
	n0 := normInterval(a/z, b/z)
	n1 := normInterval((a-1)/z, (b-1)/z)
	m := (1-s.q)*n0 + s.q*n1
	if s.remove {
		return m, n0
	}
	return n0, m
}

// lossMass returns the P- and Q-mass of losses in (la, lb].
func (s gaussianPLDStep) lossMass(la, lb float64) (p, qm float64) {
	xa, xb := s.xAt(la), s.xAt(lb)
	if s.remove {
		return s.massPQ(xa, xb)
	}
	return s.massPQ(xb, xa)
}

// lossRange returns losses below which and above which P has at most pldTail mass.
func (s gaussianPLDStep) lossRange() (lo, hi float64) {
	k := normUpperQuantile(pldTail)
	if s.remove { // P = M: x ∈ [−kz, 1 + kz] holds all but 2·pldTail
		return s.lossAt(-k * s.z), s.lossAt(1 + k*s.z)
	}
	return s.lossAt(k * s.z), s.lossAt(-k * s.z)
}

// discretize builds the connect-the-dots PLD of one step on the grid of step delta.
func (s gaussianPLDStep) discretize(delta float64) lossPMF {
	lo, hi := s.lossRange()
	iLo, iHi := int(math.Floor(lo/delta)), int(math.Ceil(hi/delta))
	out := lossPMF{offset: iLo, p: make([]float64, iHi-iLo+1)}
	// Mass at or below the lowest grid point moves up onto it; above the highest, to +∞.
	out.p[0], _ = s.lossMass(math.Inf(-1), float64(iLo)*delta)
	out.inf, _ = s.lossMass(float64(iHi)*delta, math.Inf(1))
	shrink := -math.Expm1(-delta) // 1 − e^{−Δ}
	for i := iLo; i < iHi; i++ {
		la, lb := float64(i)*delta, float64(i+1)*delta
		pm, qm := s.lossMass(la, lb)
		if pm <= 0 {
			continue
		}
		// Split so that P and Q masses are kept: b at l_{i+1}, a at l_i, with
		// a + b = P and a e^{−la} + b e^{−lb} = Q. Rounding is resolved upwards.
		b := (pm - qm*math.Exp(la)) / shrink
		b = math.Min(pm, math.Max(0, b)+1e-12*pm)
		out.p[i-iLo] += pm - b
		out.p[i+1-iLo] += b
	}
	return out
}

// moments returns the mean and variance of the finite part of the loss.
func (d lossPMF) moments(delta float64) (mean, variance float64) {
	var m, s, w float64
	for j, p := range d.p {
		l := float64(d.offset+j) * delta
		w += p
		m += p * l
		s += p * l * l
	}
	if w == 0 {
		return 0, 0
	}
	m /= w
	return m, math.Max(s/w-m*m, 0)
}

// mgfTerms holds log p_j and l_j of the positive-mass grid points, for Chernoff bounds.
type mgfTerms struct{ logP, loss []float64 }

func (d lossPMF) mgfTerms(step float64) mgfTerms {
	var m mgfTerms
	for j, p := range d.p {
		if p > 0 {
			m.logP = append(m.logP, math.Log(p))
			m.loss = append(m.loss, float64(d.offset+j)*step)
		}
	}
	return m
}

// logMGF returns log E[e^{λL}] over the finite part.
func (m mgfTerms) logMGF(lambda float64) float64 {
	maxT := math.Inf(-1)
	for i, lp := range m.logP {
		maxT = math.Max(maxT, lp+lambda*m.loss[i])
	}
	var s float64
	for i, lp := range m.logP {
		s += math.Exp(lp + lambda*m.loss[i] - maxT)
	}
	return maxT + math.Log(s)
}

// chernoffLambdas are the λ tried in Chernoff bounds: any λ > 0 gives a valid bound, and a
// factor-2 grid is close enough to the best.
var chernoffLambdas = func() (ls [17]float64) {
	for i := range ls {
		ls[i] = math.Ldexp(1, i-7)
	}
	return
}()

// stepMGF holds log E[e^{±λL}] of one step at each λ in chernoffLambdas.
type stepMGF struct{ pos, neg [len(chernoffLambdas)]float64 }

func (d lossPMF) chernoff(step float64) stepMGF {
	terms := d.mgfTerms(step)
	var m stepMGF
	for i, l := range chernoffLambdas {
		m.pos[i] = terms.logMGF(l)
		m.neg[i] = terms.logMGF(-l)
	}
	return m
}

// composeWindow finds, by Chernoff bounds on the composition Σ_g T_g·(step loss of group g),
// losses lo < hi with P[sum < lo] ≤ eta and P[sum > hi] ≤ eta.
func composeWindow(mgfs []stepMGF, counts []int, eta float64) (lo, hi float64) {
	logEta := math.Log(eta)
	hi, lo = math.Inf(1), math.Inf(-1)
	for k, lambda := range chernoffLambdas {
		var kp, km float64
		for i, m := range mgfs {
			kp += float64(counts[i]) * m.pos[k]
			km += float64(counts[i]) * m.neg[k]
		}
		hi = math.Min(hi, (kp-logEta)/lambda)
		lo = math.Max(lo, -(km-logEta)/lambda)
	}
	return lo, hi
}

// fftPlans keeps FFT plans (twiddle factors) by size across queries.
type fftPlans map[int]*fourier.FFT

func (p *fftPlans) get(n int) *fourier.FFT {
	if *p == nil {
		*p = fftPlans{}
	}
	if f, ok := (*p)[n]; ok {
		return f
	}
	if len(*p) >= 4 {
		clear(*p)
	}
	f := fourier.NewFFT(n)
	(*p)[n] = f
	return f
}

// cpow returns c^n by repeated squaring.
func cpow(c complex128, n int) complex128 {
	r := complex(1, 0)
	for n > 0 {
		if n&1 == 1 {
			r *= c
		}
		c *= c
		n >>= 1
	}
	return r
}

// compose returns the composition of counts[g] copies of steps[g] over all g on a window of
// the loss grid that holds all but eta of the finite mass below and above: one FFT per group
// of a cyclic grid of M points, powers of the coefficients, one inverse FFT. Mass of the true
// composition above the window wraps around to lower losses, which could lower δ, so the
// Chernoff bound eta on it is added to the mass at +∞; mass below the window wraps upwards,
// which can only raise δ.
func compose(steps []lossPMF, mgfs []stepMGF, counts []int, step, eta float64, plans *fftPlans) lossPMF {
	lo, hi := composeWindow(mgfs, counts, eta)
	iLo, iHi := int(math.Floor(lo/step)), int(math.Ceil(hi/step))
	m := 1
	for m < iHi-iLo+1 {
		m <<= 1
	}
	fft := plans.get(m)
	buf := make([]float64, m)
	var prod []complex128
	finite := 1.0
	for g, d := range steps {
		clear(buf)
		for j, p := range d.p {
			k := (d.offset + j) % m
			if k < 0 {
				k += m
			}
			buf[k] += p
		}
		c := fft.Coefficients(nil, buf)
		for i := range c {
			c[i] = cpow(c[i], counts[g])
		}
		if prod == nil {
			prod = c
		} else {
			for i := range prod {
				prod[i] *= c[i]
			}
		}
		finite *= math.Pow(1-d.inf, float64(counts[g]))
	}
	res := fft.Sequence(buf, prod)
	out := lossPMF{offset: iLo, p: make([]float64, m), inf: 1 - finite + eta}
	inv := 1 / float64(m)
	for k, v := range res {
		j := (k - iLo) % m
		if j < 0 {
			j += m
		}
		out.p[j] = math.Max(0, v*inv)
	}
	return out
}

// epsilon returns the smallest ε ≥ 0 with δ(ε) ≤ delta, +Inf if the mass at +∞ exceeds delta.
//
// Only losses ≥ 0 matter. With grid points g = 0, 1, … (loss gΔ), for gΔ ≤ ε < (g+1)Δ
//
//	δ(ε) = inf + SP[g] − e^{ε−gΔ}·T[g],  SP[g] = Σ_{h>g} p_h,  T[g] = Σ_{h>g} p_h e^{−(h−g)Δ},
//
// both accumulated from the far tail (smallest terms first, and no overflow however large ε).
// δ at grid points is nonincreasing, so the crossing segment is found by binary search and ε
// solved in closed form inside it.
func (d lossPMF) epsilon(delta, step float64) float64 {
	if d.inf >= delta {
		return math.Inf(1)
	}
	n := d.offset + len(d.p) // grid points 0 … n−1 hold all mass at loss ≥ 0
	if n <= 0 {
		return 0
	}
	pAt := func(g int) float64 {
		if j := g - d.offset; j >= 0 {
			return d.p[j]
		}
		return 0
	}
	sp := make([]float64, n)
	t := make([]float64, n)
	decay := math.Exp(-step)
	for g := n - 2; g >= 0; g-- {
		next := pAt(g + 1)
		sp[g] = sp[g+1] + next
		t[g] = decay * (t[g+1] + next)
	}
	at := func(g int) float64 { return d.inf + sp[g] - t[g] }
	if at(0) <= delta {
		return 0
	}
	lo, hi := 0, n-1 // at(lo) > delta ≥ at(hi) = inf
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if at(mid) <= delta {
			hi = mid
		} else {
			lo = mid
		}
	}
	left := float64(lo) * step
	if t[lo] <= 0 {
		return left
	}
	eps := left + math.Log((d.inf+sp[lo]-delta)/t[lo])
	return math.Min(math.Max(eps, left), float64(hi)*step)
}

// PLDAccountant is the privacy-loss-distribution accountant: tight (its ε is a rigorous upper
// bound that converges to the true ε as Δ → 0) and markedly below RDP over few steps.
//
// Queries are cached: the discretised step of each (q, z) and the last few answers, so that the
// engine's EpsilonAfter-before, Epsilon-after pattern computes each composition once.
// Like the RDP accountant, it is not safe for concurrent use.
type PLDAccountant struct {
	delta   float64
	events  events
	steps   map[pldStepKey]pldStep
	moments map[pldStepKey][3]float64 // mean, variance, range of one step (for gridFor)
	answers map[string]float64        // recent ε by (groups, δ)
	plans   fftPlans
}

type pldStep struct {
	pmf lossPMF
	mgf stepMGF
}

type pldStepKey struct {
	q, z, step float64
	remove     bool
}

// NewPLDAccountant returns an empty PLD accountant with grid step discretization (in units of
// privacy loss; DefaultPLDDiscretization unless you know better).
func NewPLDAccountant(discretization float64) (*PLDAccountant, error) {
	if err := checkPositiveFinite("PLD discretization", discretization); err != nil {
		return nil, err
	}
	if discretization > 0.1 {
		return nil, fmt.Errorf("privacy: PLD discretization %v is too coarse (want ≤ 0.1)", discretization)
	}
	return &PLDAccountant{delta: discretization, steps: map[pldStepKey]pldStep{},
		moments: map[pldStepKey][3]float64{}, answers: map[string]float64{}}, nil
}

func (a *PLDAccountant) Kind() string { return "pld" }
func (a *PLDAccountant) Steps() int   { return a.events.steps() }

func (a *PLDAccountant) Compose(q, z float64, steps int) error {
	return a.events.add(Event{SamplingRate: q, NoiseMultiplier: z, Steps: steps})
}

func (a *PLDAccountant) MarshalJSON() ([]byte, error) {
	return json.Marshal(AccountantState{Kind: "pld", Discretization: a.delta, Events: append([]Event{}, a.events...)})
}

func (a *PLDAccountant) Epsilon(delta float64) (float64, error) {
	return a.epsilon(a.events.grouped(), delta)
}

func (a *PLDAccountant) EpsilonAfter(q, z float64, steps int, delta float64) (float64, error) {
	es := append(events{}, a.events...)
	if err := es.add(Event{SamplingRate: q, NoiseMultiplier: z, Steps: steps}); err != nil {
		return 0, err
	}
	return a.epsilon(es.grouped(), delta)
}

// gridFor picks the grid step: the configured one, coarsened so that the composed
// distribution (about ±12 standard deviations around its mean, plus one step's range) fits in
// pldMaxPoints points.
func (a *PLDAccountant) gridFor(groups []Event) float64 {
	var mean, variance, spread float64
	for _, g := range groups {
		for _, remove := range []bool{true, false} {
			key := pldStepKey{q: g.SamplingRate, z: g.NoiseMultiplier, remove: remove}
			mom, ok := a.moments[key]
			if !ok {
				s := gaussianPLDStep{q: g.SamplingRate, z: g.NoiseMultiplier, remove: remove}
				lo, hi := s.lossRange()
				coarse := math.Max(a.delta, (hi-lo)/4096)
				m, v := s.discretize(coarse).moments(coarse)
				mom = [3]float64{m, v, hi - lo}
				a.moments[key] = mom
			}
			mean = math.Max(mean, math.Abs(mom[0])*float64(g.Steps))
			variance = math.Max(variance, mom[1]*float64(g.Steps))
			spread = math.Max(spread, mom[2])
		}
	}
	width := 24*math.Sqrt(variance) + 2*spread + mean
	return math.Max(a.delta, width/pldMaxPoints)
}

func (a *PLDAccountant) epsilon(groups []Event, delta float64) (float64, error) {
	if err := checkDelta(delta); err != nil {
		return 0, err
	}
	if len(groups) == 0 {
		return 0, nil
	}
	answerKey := fmt.Sprint(groups, delta)
	if e, ok := a.answers[answerKey]; ok {
		return e, nil
	}
	step := a.gridFor(groups)
	var eps float64
	for _, remove := range []bool{true, false} {
		steps := make([]lossPMF, len(groups))
		mgfs := make([]stepMGF, len(groups))
		counts := make([]int, len(groups))
		for i, g := range groups {
			key := pldStepKey{q: g.SamplingRate, z: g.NoiseMultiplier, step: step, remove: remove}
			d, ok := a.steps[key]
			if !ok {
				pmf := gaussianPLDStep{q: g.SamplingRate, z: g.NoiseMultiplier, remove: remove}.discretize(step)
				d = pldStep{pmf: pmf, mgf: pmf.chernoff(step)}
				if len(a.steps) >= 16 {
					clear(a.steps)
				}
				a.steps[key] = d
			}
			steps[i], mgfs[i], counts[i] = d.pmf, d.mgf, g.Steps
		}
		total := compose(steps, mgfs, counts, step, 1e-6*delta, &a.plans)
		e := total.epsilon(delta, step)
		if math.IsInf(e, 1) {
			return 0, fmt.Errorf("privacy: PLD accountant: δ = %v is below the probability (%.3g) of unbounded loss; use a larger δ", delta, total.inf)
		}
		eps = math.Max(eps, e)
	}
	if len(a.answers) >= 8 {
		clear(a.answers)
	}
	a.answers[answerKey] = eps
	return eps, nil
}
