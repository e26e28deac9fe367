package privacy

import (
	"fmt"
	"math"
)

// Rényi DP of the distributed mechanisms, in the integer units of the secure sum.
//
// Skellam (Agarwal, Kairouz, Liu, NeurIPS 2021, Theorem 3.5 / Corollary 3.6): the summed noise is
// symmetric Skellam of per-coordinate variance V (each client adds Sk(v/2, v/2), a difference of
// two Poisson(v/2), and the shares add up to Sk(V/2, V/2) with V = Σv). For an integer query of
// L1 and L2 sensitivities Δ1, Δ2 and integer α > 1,
//
//	ε(α) ≤ α·Δ2²/(2V) + min{ ((2α−1)·Δ2² + 6·Δ1)/(4V²), 3·Δ1/(2V) }.
//
// The first term is the Gaussian mechanism's at the same variance.
//
// Distributed discrete Gaussian (Kairouz, Liu, Steinke, ICML 2021, Proposition 14): n clients
// each add N_Z(0, σ²) per coordinate; with Δ̄2 = Δ2/(√n·σ), Δ̄1 = Δ1/(√n·σ) and
// τ = 10·Σ_{k=1}^{n−1} exp(−2π²σ²·k/(k+1)) (the distance of the sum from N_Z(0, nσ²)),
//
//	ε(α) ≤ min{ α/2·Δ̄2² + τd,  α/2·(Δ̄2² + 2Δ̄1τ + τ²d),  α/2·(Δ̄2 + τ√d)² }.
//
// Poisson subsampling at rate q (Zhu and Wang, ICML 2019, Theorem 6: the general upper bound
// for any mechanism with RDP ε(·), integer α ≥ 2):
//
//	ε_q(α) ≤ 1/(α−1)·log{ (1−q)^{α−1}(αq−q+1) + C(α,2)q²(1−q)^{α−2}e^{ε(2)}
//	                       + 3·Σ_{l=3}^{α} C(α,l)(1−q)^{α−l}q^l e^{(l−1)ε(l)} },
//
// and never more than ε(α) itself (subsampling cannot hurt). Unlike the sampled Gaussian's exact
// formula, the general bound pays a factor up to 3 on the higher moments; the accountant reports
// it as is (an upper bound, never below the true ε).

// Distributed-DP mechanism names.
const (
	MechanismSkellam = "skellam"
	MechanismDDGauss = "ddgauss"
)

// DiscreteEvent describes one step of a distributed-DP mechanism as the RDP accountant composes
// it, in the integer units of the secure sum.
type DiscreteEvent struct {
	Mechanism string  `json:"mechanism"` // MechanismSkellam or MechanismDDGauss
	L1        float64 `json:"l1"`        // Δ1: L1 sensitivity after rotation, scaling and rounding
	L2        float64 `json:"l2"`        // Δ2: L2 sensitivity after rotation, scaling and rounding
	// ShareParam is each share's noise parameter: Skellam, the variance v of one client's share;
	// ddgauss, the σ² of one client's N_Z(0, σ²).
	ShareParam float64 `json:"share_param"`
	Shares     int     `json:"shares"` // noise shares in the released sum (survivors, never more)
	Dim        int     `json:"dim"`    // coordinates of the summed vector (after padding)
	// CountShare, when > 0, is each share's parameter of the adaptive clip's count, a second
	// query of sensitivity 1 (±1 per client) released with the vector under independent noise:
	// the step's RDP is the sum of the two (composition), before subsampling.
	CountShare float64 `json:"count_share,omitempty"`
}

func (d DiscreteEvent) check() error {
	switch {
	case d.Mechanism != MechanismSkellam && d.Mechanism != MechanismDDGauss:
		return fmt.Errorf("privacy: unknown distributed mechanism %q (want %s or %s)", d.Mechanism, MechanismSkellam, MechanismDDGauss)
	case !(d.L2 > 0) || math.IsInf(d.L2, 0) || !(d.L1 >= d.L2) || math.IsInf(d.L1, 0):
		return fmt.Errorf("privacy: distributed mechanism sensitivities L1 = %v, L2 = %v: want finite, L1 ≥ L2 > 0", d.L1, d.L2)
	case !(d.ShareParam > 0) || math.IsInf(d.ShareParam, 0):
		return fmt.Errorf("privacy: distributed mechanism share parameter %v must be finite and > 0", d.ShareParam)
	case d.Mechanism == MechanismDDGauss && d.ShareParam < 0.25:
		return fmt.Errorf("privacy: distributed discrete Gaussian needs σ ≥ 1/2 per share (Kairouz et al., Prop. 14), got σ² = %v", d.ShareParam)
	case d.Shares < 1 || d.Dim < 1:
		return fmt.Errorf("privacy: distributed mechanism needs ≥ 1 share and ≥ 1 coordinate, got %d and %d", d.Shares, d.Dim)
	case !(d.CountShare >= 0) || math.IsInf(d.CountShare, 0) || (d.Mechanism == MechanismDDGauss && d.CountShare > 0 && d.CountShare < 0.25):
		return fmt.Errorf("privacy: distributed mechanism count share %v: want 0, or finite and > 0 (≥ 1/4 for ddgauss)", d.CountShare)
	}
	return nil
}

// count is the adaptive clip's count as a step of its own: one coordinate, sensitivity 1.
func (d DiscreteEvent) count() DiscreteEvent {
	return DiscreteEvent{Mechanism: d.Mechanism, L1: 1, L2: 1, ShareParam: d.CountShare, Shares: d.Shares, Dim: 1}
}

// Variance is the per-coordinate variance parameter of the summed noise: Skellam, Σv (exact);
// ddgauss, n·σ² (the sum is close to N_Z(0, nσ²), whose variance is at most nσ²).
func (d DiscreteEvent) Variance() float64 { return float64(d.Shares) * d.ShareParam }

// NoiseMultiplier is the summed noise's standard deviation in units of Δ2: the multiplier of
// the Gaussian mechanism the step approaches as the discretisation vanishes.
func (d DiscreteEvent) NoiseMultiplier() float64 { return math.Sqrt(d.Variance()) / d.L2 }

// RDP is the unsampled step's Rényi DP at integer order alpha ≥ 2: the vector's, plus the
// count's under adaptive clipping.
func (d DiscreteEvent) RDP(alpha int) float64 { return d.rdpCurve()(alpha) }

// rdpCurve returns RDP as a function of the order, with the order-independent parts (τ of the
// vector and of the count, a loop of up to Shares terms each) computed once: the subsampling
// bound needs the RDP at every order up to 10⁴.
func (d DiscreteEvent) rdpCurve() func(alpha int) float64 {
	vector := d.vectorCurve()
	if d.CountShare <= 0 {
		return vector
	}
	count := d.count().vectorCurve()
	return func(alpha int) float64 { return vector(alpha) + count(alpha) }
}

func (d DiscreteEvent) vectorCurve() func(alpha int) float64 {
	if d.Mechanism == MechanismSkellam {
		v := d.Variance()
		l22 := d.L2 * d.L2
		return func(alpha int) float64 {
			a := float64(alpha)
			r := a*l22/(2*v) + min(((2*a-1)*l22+6*d.L1)/(4*v*v), 3*d.L1/(2*v))
			return rdpMargin(r, a)
		}
	}
	n := float64(d.Shares)
	s := math.Sqrt(d.ShareParam)
	l2 := d.L2 / (math.Sqrt(n) * s)
	l1 := d.L1 / (math.Sqrt(n) * s)
	tau := d.tau()
	dim := float64(d.Dim)
	return func(alpha int) float64 {
		a := float64(alpha)
		r := min(a/2*l2*l2+tau*dim, a/2*(l2*l2+2*l1*tau+tau*tau*dim), a/2*(l2+math.Sqrt(dim)*tau)*(l2+math.Sqrt(dim)*tau))
		return rdpMargin(r, a)
	}
}

// Tau is the distributed discrete Gaussian's τ (zero meaning for Skellam), see tau.
func (d DiscreteEvent) Tau() float64 {
	if d.Mechanism != MechanismDDGauss {
		return 0
	}
	return d.tau()
}

// tau is Kairouz et al.'s τ = 10·Σ_{k=1}^{n−1} exp(−2π²σ²·k/(k+1)); the terms decrease toward
// exp(−2π²σ²), so the sum stops once they can no longer change it.
func (d DiscreteEvent) tau() float64 {
	var t float64
	c := -2 * math.Pi * math.Pi * d.ShareParam
	for k := 1; k < d.Shares; k++ {
		term := math.Exp(c * float64(k) / float64(k+1))
		t += term
		if term < 1e-300 {
			break
		}
	}
	return 10 * t
}

// sampledRDP is the per-step RDP at each (integer) order, Poisson-subsampled at rate q.
func (d DiscreteEvent) sampledRDP(q float64, orders []float64) []float64 {
	out := make([]float64, len(orders))
	maxA := 0
	for _, o := range orders {
		maxA = max(maxA, int(o))
	}
	base := make([]float64, maxA+1)
	rdp := d.rdpCurve()
	for l := 2; l <= maxA; l++ {
		base[l] = rdp(l)
	}
	for i, o := range orders {
		a := int(o)
		if float64(a) != o || a < 2 {
			out[i] = math.Inf(1)
			continue
		}
		if q == 1 {
			out[i] = base[a]
			continue
		}
		out[i] = min(base[a], rdpMargin(subsampledLogMoment(q, a, base)/float64(a-1), float64(a)))
	}
	return out
}

// subsampledLogMoment is the logarithm of Zhu and Wang's bracket (see above) at integer order a,
// from the unsampled RDP base[l], l = 2..a, computed as a log-sum-exp.
func subsampledLogMoment(q float64, a int, base []float64) float64 {
	lq, l1q := math.Log(q), math.Log1p(-q)
	fa := float64(a)
	terms := make([]float64, 0, a)
	terms = append(terms, (fa-1)*l1q+math.Log(fa*q-q+1))
	logBinom := math.Log(fa) // log C(a, 1)
	for l := 2; l <= a; l++ {
		logBinom += math.Log(float64(a-l+1) / float64(l))
		t := logBinom + float64(a-l)*l1q + float64(l)*lq + float64(l-1)*base[l]
		if l >= 3 {
			t += math.Log(3)
		}
		terms = append(terms, t)
	}
	m := math.Inf(-1)
	for _, t := range terms {
		m = math.Max(m, t)
	}
	var s float64
	for _, t := range terms {
		s += math.Exp(t - m)
	}
	return m + math.Log(s)
}

// integerOrders is the order grid for distributed DP: every integer from 2 to 64, then
// geometric steps (×1.1) up to 10⁴.
var integerOrders = func() []float64 {
	var orders []float64
	for a := 2.0; a <= 64; a++ {
		orders = append(orders, a)
	}
	for a := 70.0; a <= 10000; a = math.Round(a * 1.1) {
		orders = append(orders, a)
	}
	return orders
}()

// DiscreteRDP returns the per-step RDP of a distributed-DP step at integer orders (each ≥ 2),
// Poisson-subsampled at rate q.
func DiscreteRDP(d DiscreteEvent, q float64, orders []float64) ([]float64, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	if err := checkSampling(q, 1); err != nil {
		return nil, err
	}
	for _, o := range orders {
		if o != math.Trunc(o) || o < 2 || o > 1e5 {
			return nil, fmt.Errorf("privacy: distributed-DP RDP needs integer orders in [2, 10⁵], got %v", o)
		}
	}
	return d.sampledRDP(q, orders), nil
}

// DiscreteStep is the accountant's event for steps steps of d at sampling rate q.
func DiscreteStep(d DiscreteEvent, q float64, steps int) Event {
	return Event{SamplingRate: q, NoiseMultiplier: d.NoiseMultiplier(), Steps: steps, Discrete: d}
}

// ComposeEvent records an event, Gaussian or distributed.
func (a *RDPAccountant) ComposeEvent(e Event) error { return a.events.add(e) }

// EpsilonAfterEvent is EpsilonAfter for any event, without recording it.
func (a *RDPAccountant) EpsilonAfterEvent(e Event, delta float64) (RDPSpent, error) {
	es := append(events{}, a.events...)
	if err := es.add(e); err != nil {
		return RDPSpent{}, err
	}
	return a.spent(es.grouped(), delta)
}
