package privacy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// Event is a run of identical steps of the Poisson-subsampled Gaussian mechanism: each step
// includes every client independently with probability SamplingRate and adds Gaussian noise
// of NoiseMultiplier × sensitivity to the sum of their clipped updates.
type Event struct {
	SamplingRate    float64 `json:"sampling_rate"`
	NoiseMultiplier float64 `json:"noise_multiplier"`
	Steps           int     `json:"steps"`
	// Discrete, when set, makes the step a distributed-DP mechanism (Skellam or distributed
	// discrete Gaussian noise summed under secure aggregation, see DiscreteEvent) instead of the
	// Gaussian; NoiseMultiplier then only reports its summed noise in units of its L2
	// sensitivity. Only the RDP accountant composes such steps.
	Discrete DiscreteEvent `json:"discrete,omitzero"`
}

func (e Event) check() error {
	if err := checkSampling(e.SamplingRate, e.NoiseMultiplier); err != nil {
		return err
	}
	if e.Discrete != (DiscreteEvent{}) {
		if err := e.Discrete.check(); err != nil {
			return err
		}
	}
	if e.Steps < 0 {
		return fmt.Errorf("privacy: steps must be ≥ 0, got %d", e.Steps)
	}
	return nil
}

// Accountant tracks the privacy spent by a run: Compose after each round, Epsilon when
// reporting. The engine can ask what one more round would cost with EpsilonAfter before running
// it (for --max-epsilon), and save the state with the run (MarshalJSON) so that a resumed run
// continues the count (RestoreAccountant).
type Accountant interface {
	// Compose records steps more steps of the sampled Gaussian mechanism.
	Compose(samplingRate, noiseMultiplier float64, steps int) error
	// Epsilon is the ε spent so far at the given δ.
	Epsilon(delta float64) (float64, error)
	// EpsilonAfter is the ε that would be spent after composing the given steps, without
	// recording them.
	EpsilonAfter(samplingRate, noiseMultiplier float64, steps int, delta float64) (float64, error)
	// Steps is the number of steps composed so far.
	Steps() int
	// Kind is "rdp" or "pld".
	Kind() string
	json.Marshaler
}

// AccountantState is the JSON form of an accountant.
type AccountantState struct {
	Kind string `json:"accountant"`
	// Conversion is the RDP→(ε, δ) conversion ("improved" or "classic"), RDP only.
	Conversion string `json:"conversion,omitempty"`
	// Discretization is the PLD grid step in privacy-loss units, PLD only.
	Discretization float64 `json:"discretization,omitempty"`
	Events         []Event `json:"events"`
}

// NewAccountant returns an empty accountant of the given kind: "rdp" (improved conversion) or
// "pld" (default discretisation).
func NewAccountant(kind string) (Accountant, error) {
	switch kind {
	case "rdp", "":
		return NewRDPAccountant(ConversionImproved), nil
	case "pld":
		return NewPLDAccountant(DefaultPLDDiscretization)
	default:
		return nil, fmt.Errorf("privacy: unknown accountant %q (want rdp or pld)", kind)
	}
}

// RestoreAccountant rebuilds an accountant from its JSON state.
func RestoreAccountant(data []byte) (Accountant, error) {
	var st AccountantState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("privacy: restore accountant: %w", err)
	}
	var acct Accountant
	switch st.Kind {
	case "rdp":
		conv := ConversionImproved
		switch st.Conversion {
		case "", "improved":
		case "classic":
			conv = ConversionClassic
		default:
			return nil, fmt.Errorf("privacy: restore accountant: unknown conversion %q", st.Conversion)
		}
		acct = NewRDPAccountant(conv)
	case "pld":
		d := st.Discretization
		if d == 0 {
			d = DefaultPLDDiscretization
		}
		a, err := NewPLDAccountant(d)
		if err != nil {
			return nil, fmt.Errorf("privacy: restore accountant: %w", err)
		}
		acct = a
	default:
		return nil, fmt.Errorf("privacy: restore accountant: unknown kind %q", st.Kind)
	}
	for i, e := range st.Events {
		if e.Discrete != (DiscreteEvent{}) {
			r, ok := acct.(*RDPAccountant)
			if !ok {
				return nil, fmt.Errorf("privacy: restore accountant: event %d is a distributed-DP step, which only the rdp accountant composes", i)
			}
			if err := r.ComposeEvent(e); err != nil {
				return nil, fmt.Errorf("privacy: restore accountant: event %d: %w", i, err)
			}
			continue
		}
		if err := acct.Compose(e.SamplingRate, e.NoiseMultiplier, e.Steps); err != nil {
			return nil, fmt.Errorf("privacy: restore accountant: event %d: %w", i, err)
		}
	}
	return acct, nil
}

// maxSteps bounds the steps an accountant composes (far beyond any run; keeps counts exact).
const maxSteps = 1 << 40

// events is the composition history shared by both accountants: runs of identical steps,
// merged when consecutive ones share their parameters.
type events []Event

func (es *events) add(e Event) error {
	if err := e.check(); err != nil {
		return err
	}
	if e.Steps == 0 {
		return nil
	}
	if es.steps() > maxSteps-e.Steps {
		return fmt.Errorf("privacy: composing %d more steps would pass the limit of %d steps", e.Steps, maxSteps)
	}
	if n := len(*es); n > 0 && (*es)[n-1].sameMechanism(e) {
		(*es)[n-1].Steps += e.Steps
		return nil
	}
	*es = append(*es, e)
	return nil
}

// sameMechanism reports whether two events are steps of the same mechanism (steps aside).
func (e Event) sameMechanism(o Event) bool {
	return e.SamplingRate == o.SamplingRate && e.NoiseMultiplier == o.NoiseMultiplier && e.Discrete == o.Discrete
}

func (es events) steps() int {
	n := 0
	for _, e := range es {
		n += e.Steps
	}
	return n
}

// grouped merges events with equal parameters anywhere in the history (composition commutes).
func (es events) grouped() []Event {
	var out []Event
outer:
	for _, e := range es {
		for i := range out {
			if out[i].sameMechanism(e) {
				out[i].Steps += e.Steps
				continue outer
			}
		}
		out = append(out, e)
	}
	return out
}

var (
	_ Accountant = (*RDPAccountant)(nil)
	_ Accountant = (*PLDAccountant)(nil)
)

// RDPAccountant is the Rényi-DP accountant. Per-step RDP curves are cached per (q, z), so a
// query after 10,000 steps costs the same as after one. It is not safe for concurrent use.
type RDPAccountant struct {
	conv   EpsilonConversion
	events events
	cache  map[curveKey][]float64
}

// maxCachedCurves bounds the accountant's cache (a curve is ~120 floats). Under distributed DP
// every round is a distinct event (the shares actually summed vary), so the cache must hold a
// whole run's: with 64, a 200-round run recomputed every round's curve each round after round
// 64, and the accountant grew to most of a round's time (5 s → 20 s per round by round 120).
const maxCachedCurves = 1 << 14

// curveKey identifies a per-step RDP curve: the event without its step count.
type curveKey struct {
	q, z float64
	d    DiscreteEvent
}

// NewRDPAccountant returns an empty RDP accountant using the given conversion.
func NewRDPAccountant(conv EpsilonConversion) *RDPAccountant {
	return &RDPAccountant{conv: conv, cache: map[curveKey][]float64{}}
}

func (a *RDPAccountant) Kind() string { return "rdp" }
func (a *RDPAccountant) Steps() int   { return a.events.steps() }

func (a *RDPAccountant) Compose(q, z float64, steps int) error {
	return a.events.add(Event{SamplingRate: q, NoiseMultiplier: z, Steps: steps})
}

func (a *RDPAccountant) MarshalJSON() ([]byte, error) {
	return json.Marshal(AccountantState{Kind: "rdp", Conversion: a.conv.String(), Events: append([]Event{}, a.events...)})
}

func (a *RDPAccountant) Epsilon(delta float64) (float64, error) {
	r, err := a.spent(a.events.grouped(), delta)
	return r.Epsilon, err
}

func (a *RDPAccountant) EpsilonAfter(q, z float64, steps int, delta float64) (float64, error) {
	es := append(events{}, a.events...)
	if err := es.add(Event{SamplingRate: q, NoiseMultiplier: z, Steps: steps}); err != nil {
		return 0, err
	}
	r, err := a.spent(es.grouped(), delta)
	return r.Epsilon, err
}

// RDPSpent is ε with the Rényi order that achieves it.
type RDPSpent struct {
	Epsilon float64 `json:"epsilon"`
	Order   float64 `json:"order"`
}

// Spent returns ε at δ and the optimal order.
func (a *RDPAccountant) Spent(delta float64) (RDPSpent, error) {
	return a.spent(a.events.grouped(), delta)
}

func (a *RDPAccountant) curve(e Event, orders []float64) []float64 {
	key := curveKey{e.SamplingRate, e.NoiseMultiplier, e.Discrete}
	if len(orders) != len(rdpOrders) {
		key.z = -key.z // the integer grid of distributed DP: cached apart
	}
	if c, ok := a.cache[key]; ok {
		return c
	}
	c := make([]float64, len(orders))
	if e.Discrete != (DiscreteEvent{}) {
		c = e.Discrete.sampledRDP(e.SamplingRate, orders)
	} else {
		for i, o := range orders {
			c[i] = sampledGaussianRDP(e.SamplingRate, e.NoiseMultiplier, o)
		}
	}
	if len(a.cache) >= maxCachedCurves {
		clear(a.cache)
	}
	a.cache[key] = c
	return c
}

// spent composes the groups' RDP on the order grid, picks the best grid order, then refines
// it over real orders between the grid neighbours by golden-section search (the optimum often
// sits on a sharp bend of the curve, where the grid alone can be several per cent off). Any
// order gives a valid bound, so the refinement can only tighten it.
func (a *RDPAccountant) spent(groups []Event, delta float64) (RDPSpent, error) {
	if err := checkDelta(delta); err != nil {
		return RDPSpent{}, err
	}
	if len(groups) == 0 {
		return RDPSpent{}, nil
	}
	orders := rdpOrders
	discrete := false
	for _, g := range groups {
		if g.Discrete != (DiscreteEvent{}) {
			// The distributed mechanisms' bounds (and the subsampling bound they compose
			// with) hold at integer orders: evaluate every group on the integer grid, no
			// refinement over real orders.
			orders, discrete = integerOrders, true
		}
	}
	total := make([]float64, len(orders))
	for _, g := range groups {
		c := a.curve(g, orders)
		for i := range total {
			total[i] += float64(g.Steps) * c[i]
		}
	}
	eps, order, err := RDPToEpsilon(orders, total, delta, a.conv)
	if err != nil {
		return RDPSpent{}, err
	}
	if math.IsNaN(order) {
		return RDPSpent{}, fmt.Errorf("privacy: RDP accountant: ε is unbounded at every order (noise far too small for %d steps)", a.events.steps())
	}
	if discrete {
		return RDPSpent{Epsilon: math.Max(eps, 0), Order: order}, nil
	}
	at := func(alpha float64) float64 {
		var r float64
		for _, g := range groups {
			r += float64(g.Steps) * sampledGaussianRDP(g.SamplingRate, g.NoiseMultiplier, alpha)
		}
		e, _, err := RDPToEpsilon([]float64{alpha}, []float64{r}, delta, a.conv)
		if err != nil {
			return math.Inf(1)
		}
		return e
	}
	i := 0
	for rdpOrders[i] != order {
		i++
	}
	lo := math.Log(rdpOrders[max(i-1, 0)] - 1)
	hi := math.Log(rdpOrders[min(i+1, len(rdpOrders)-1)] - 1)
	g := (math.Sqrt(5) - 1) / 2
	x1, x2 := hi-g*(hi-lo), lo+g*(hi-lo)
	f1, f2 := at(1+math.Exp(x1)), at(1+math.Exp(x2))
	for hi-lo > 1e-6 {
		if f1 < f2 {
			hi, x2, f2 = x2, x1, f1
			x1 = hi - g*(hi-lo)
			f1 = at(1 + math.Exp(x1))
		} else {
			lo, x1, f1 = x1, x2, f2
			x2 = lo + g*(hi-lo)
			f2 = at(1 + math.Exp(x2))
		}
	}
	if f1 < eps {
		eps, order = f1, 1+math.Exp(x1)
	}
	if f2 < eps {
		eps, order = f2, 1+math.Exp(x2)
	}
	return RDPSpent{Epsilon: math.Max(eps, 0), Order: order}, nil
}

// ErrUnreachable reports a privacy target no noise multiplier in range can meet.
var ErrUnreachable = errors.New("privacy: target unreachable")

// Calibration bounds for noise multipliers.
const (
	minNoiseMultiplier = 0.05
	maxNoiseMultiplier = 1e4
)

// CalibrateNoise returns the smallest noise multiplier z (to a relative 10⁻⁴, rounded up) for
// which steps steps at sampling rate q spend at most targetEpsilon at delta, according to a
// fresh accountant of the given kind ("rdp" or "pld"). It bisects on log z: ε decreases with z.
func CalibrateNoise(kind string, targetEpsilon, q float64, steps int, delta float64) (float64, error) {
	if err := checkPositiveFinite("target epsilon", targetEpsilon); err != nil {
		return 0, err
	}
	if err := checkSampling(q, 1); err != nil {
		return 0, err
	}
	if err := checkDelta(delta); err != nil {
		return 0, err
	}
	if steps <= 0 {
		return 0, fmt.Errorf("privacy: steps must be > 0, got %d", steps)
	}
	eps := func(z float64) (float64, error) {
		acct, err := NewAccountant(kind)
		if err != nil {
			return 0, err
		}
		return acct.EpsilonAfter(q, z, steps, delta)
	}
	z, err := CalibrateNoiseFunc(targetEpsilon, eps)
	if err != nil {
		return 0, fmt.Errorf("%w (δ = %v, %d steps at q = %v)", err, delta, steps, q)
	}
	return z, nil
}

// CalibrateNoiseFunc returns the smallest noise multiplier z in [0.05, 10⁴] (to a relative
// 10⁻⁴, rounded up) with eps(z) ≤ targetEpsilon, for any ε that does not increase with z (the
// distributed mechanisms' accountants as well as the Gaussian's). It bisects on log z. eps may
// return +Inf for a z at which the mechanism cannot run (it then counts as above the target).
func CalibrateNoiseFunc(targetEpsilon float64, eps func(z float64) (float64, error)) (float64, error) {
	if err := checkPositiveFinite("target epsilon", targetEpsilon); err != nil {
		return 0, err
	}
	hi := 1.0
	e, err := eps(hi)
	if err != nil {
		return 0, err
	}
	lo := hi
	if e <= targetEpsilon {
		for {
			lo = hi / 2
			if lo < minNoiseMultiplier {
				return 0, fmt.Errorf("%w: ε = %v is met even at noise multiplier %v; a smaller one is outside the calibrated range", ErrUnreachable, targetEpsilon, hi)
			}
			if e, err = eps(lo); err != nil {
				return 0, err
			}
			if e > targetEpsilon {
				break
			}
			hi = lo
		}
	} else {
		for {
			lo, hi = hi, hi*2
			if hi > maxNoiseMultiplier {
				return 0, fmt.Errorf("%w: ε = %v needs a noise multiplier above %v", ErrUnreachable, targetEpsilon, maxNoiseMultiplier)
			}
			if e, err = eps(hi); err != nil {
				return 0, err
			}
			if e <= targetEpsilon {
				break
			}
		}
	}
	// Invariant: ε(lo) > target ≥ ε(hi).
	for hi/lo > 1+1e-4 {
		mid := math.Sqrt(lo * hi)
		e, err := eps(mid)
		if err != nil {
			return 0, err
		}
		if e <= targetEpsilon {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi, nil
}
