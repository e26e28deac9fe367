package privacy

import (
	"fmt"
	"math"
	"slices"
)

// Rényi DP of the Poisson-subsampled Gaussian mechanism (Mironov, Talwar, Zhang 2019, "Rényi
// Differential Privacy of the Sampled Gaussian Mechanism"). With sampling rate q and noise
// multiplier z (noise σ = z × sensitivity), the RDP of order α of one step is
//
//	ε(α) = log A_α / (α − 1),  A_α = E_{x~N(0,z²)} [((1 − q) + q·e^{(2x−1)/(2z²)})^α],
//
// the worst case over neighbouring datasets under add/remove adjacency (MTZ19, §3). Integer
// orders use the exact binomial expansion, fractional orders a quadrature of the integral; both
// compute A_α − 1 (never A_α itself), so that tiny divergences at small q keep full precision.

// rdpOrders is the grid of orders: geometric steps (×1.1) in α − 1 from 10⁻³ (needed when the
// noise is small and the steps many: the best order then lies just above 1) to 11, then
// integers in geometric steps up to 10⁴ (needed when ε is small: large orders). The
// accountant then refines the best grid order over the reals (see RDPAccountant.spent).
var rdpOrders = func() []float64 {
	var orders []float64
	for b := 1e-3; b < 10; b *= 1.1 {
		orders = append(orders, 1+b)
	}
	for a := 11.0; a <= 10000; a = math.Max(a+1, math.Round(a*1.1)) {
		orders = append(orders, a)
	}
	return orders
}()

// RDPOrders returns a copy of the orders the RDP accountant evaluates.
func RDPOrders() []float64 { return slices.Clone(rdpOrders) }

func checkSampling(q, z float64) error {
	if math.IsNaN(q) || math.IsInf(q, 0) {
		return fmt.Errorf("sampling rate %v: %w", q, ErrNonFinite)
	}
	if !(q > 0 && q <= 1) {
		return fmt.Errorf("privacy: sampling rate must be in (0, 1], got %v", q)
	}
	return checkPositiveFinite("noise multiplier", z)
}

// rdpMargin inflates a computed RDP value to cover floating-point error in log A_α (whose
// absolute error is below 10⁻¹³ by a wide margin), so the accountant never under-reports.
func rdpMargin(rdp, alpha float64) float64 {
	return rdp*(1+1e-9) + 1e-10/(alpha-1)
}

// SampledGaussianRDP returns the per-step RDP of the Poisson-subsampled Gaussian mechanism at
// each given order (each > 1). q = 1 is the plain Gaussian mechanism, α/(2z²).
func SampledGaussianRDP(q, z float64, orders []float64) ([]float64, error) {
	if err := checkSampling(q, z); err != nil {
		return nil, err
	}
	out := make([]float64, len(orders))
	for i, a := range orders {
		if !(a > 1) || math.IsInf(a, 0) {
			return nil, fmt.Errorf("privacy: RDP order must be finite and > 1, got %v", a)
		}
		out[i] = sampledGaussianRDP(q, z, a)
	}
	return out, nil
}

// sampledGaussianRDP is one order, arguments already checked.
func sampledGaussianRDP(q, z, a float64) float64 {
	if q == 1 {
		return a / (2 * z * z)
	}
	var logA float64
	if a == math.Trunc(a) && a <= 1e6 {
		logA = logAInteger(q, z, int(a))
	} else {
		logA = logAFractional(q, z, a)
	}
	return rdpMargin(logA/(a-1), a)
}

// logAInteger computes log A_α for integer α from
// A_α − 1 = Σ_{k=2}^{α} C(α,k) (1−q)^{α−k} q^k (e^{k(k−1)/(2z²)} − 1)
// (the k = 0, 1 terms of the binomial expansion of A_α sum with the rest to 1 + this).
func logAInteger(q, z float64, alpha int) float64 {
	if alpha < 2 {
		return 0
	}
	lq, l1q := math.Log(q), math.Log1p(-q)
	inv2s2 := 1 / (2 * z * z)
	maxT := math.Inf(-1)
	terms := make([]float64, 0, alpha-1)
	// log C(α, k), from log C(α, 1) = log α by C(α, k) = C(α, k−1)·(α−k+1)/k: the rounding
	// error grows like k·2⁻⁵³, far inside the accountant's margin for α ≤ 10⁴.
	logBinom := math.Log(float64(alpha))
	for k := 2; k <= alpha; k++ {
		logBinom += math.Log(float64(alpha-k+1) / float64(k))
		e := float64(k*(k-1)) * inv2s2
		t := logBinom + float64(alpha-k)*l1q + float64(k)*lq + logExpm1(e)
		if q == 1 && k < alpha {
			t = math.Inf(-1)
		}
		terms = append(terms, t)
		maxT = math.Max(maxT, t)
	}
	var s float64
	for _, t := range terms {
		s += math.Exp(t - maxT)
	}
	return log1pExp(maxT + math.Log(s))
}

// logExpm1 returns log(e^x − 1) for x > 0.
func logExpm1(x float64) float64 {
	if x > 40 {
		return x + math.Log1p(-math.Exp(-x))
	}
	return math.Log(math.Expm1(x))
}

// log1pExp returns log(1 + e^x).
func log1pExp(x float64) float64 {
	if x > 0 {
		return x + math.Log1p(math.Exp(-x))
	}
	return math.Log1p(math.Exp(x))
}

// logAFractional computes log A_α for any α > 1 by trapezoidal quadrature of
//
//	A_α − 1 = ∫ φ_z(x) [(1 + y)^α − 1 − αy] dx,  y = q(e^{(2x−1)/(2z²)} − 1),
//
// which holds because E[y] = 0; the bracket is ≥ 0 (convexity), so the sum has no cancellation.
// The integrand is analytic in the strip |Im x| < πz² (its nearest singularities are where
// (1−q) + q·e^u vanishes) and decays like a Gaussian, where the trapezoidal rule with step h
// converges like e^{−2π·πz²/h}: h = min(z/10, πz²/40) makes that error below e⁻²⁰⁰, and the
// range [−30z, α+30z] holds all but e⁻⁴⁰⁰ of the mass (the two modes sit near 0 and near α).
func logAFractional(q, z, alpha float64) float64 {
	h := math.Min(z/10, math.Pi*z*z/40)
	lo, hi := -30*z, alpha+30*z
	n := int(math.Ceil((hi - lo) / h))
	h = (hi - lo) / float64(n)
	inv2s2 := 1 / (2 * z * z)
	logNorm := -math.Log(z * math.Sqrt(2*math.Pi))
	maxT := math.Inf(-1)
	var s float64
	for i := 0; i <= n; i++ {
		x := lo + float64(i)*h
		u := (2*x - 1) * inv2s2
		t := -x*x*inv2s2 + logBracket(q, alpha, u)
		if t == math.Inf(-1) {
			continue
		}
		// Streaming log-sum-exp.
		if t > maxT {
			s = s*math.Exp(maxT-t) + 1
			maxT = t
		} else {
			s += math.Exp(t - maxT)
		}
	}
	return log1pExp(maxT + math.Log(s) + logNorm + math.Log(h))
}

// logBracket returns log((1+y)^α − 1 − αy) for y = q·(e^u − 1) > −1, accurately for small y.
//
// For u > 30 it works with log y instead of y: with a small noise multiplier z, u = (2x−1)/(2z²)
// reaches thousands over the quadrature range (at z = 0.05, x = α + 30z gives u ≈ 200·(2α+2)),
// e^u and y overflow to +Inf, and the bracket would be Inf − Inf = NaN (the "RDP at order 1.001
// is NaN" of `privacy epsilon --noise-multiplier 0.05 --sampling-rate 0.25`). In logs,
// log y = log q + log(e^u − 1) and log(1+y) = log(1 + e^{log y}) are finite, and
//
//	log((1+y)^α − 1 − αy) = a + log(1 − e^{log(1+αy) − a}),  a = α·log(1+y),
//
// where log(1+αy) − a < 0 because the bracket is positive (convexity of (1+y)^α, y > 0).
func logBracket(q, alpha, u float64) float64 {
	if u > 30 {
		ly := math.Log(q) + logExpm1(u)
		a := alpha * log1pExp(ly)
		r := log1pExp(math.Log(alpha)+ly) - a
		if !(r < 0) {
			return math.Inf(-1) // only through rounding, when the bracket is below a's ulp
		}
		return a + math.Log1p(-math.Exp(r))
	}
	y := q * math.Expm1(u)
	if y == 0 {
		return math.Inf(-1)
	}
	l1y := math.Log1p(y)
	a := alpha * l1y // log (1+y)^α
	if math.Abs(y) < 0.25 && math.Abs(a) < 0.25 {
		// (expm1(a) − a) + α(log1p(y) − y), each by its series: both are O(y²).
		v := expm1MinusX(a) + alpha*log1pMinusX(y)
		if v <= 0 {
			return math.Inf(-1)
		}
		return math.Log(v)
	}
	if a > 30 {
		// e^a dominates: log(e^a − 1 − αy) = a + log1p(−(1+αy)e^{−a}).
		return a + math.Log1p(-(1+alpha*y)*math.Exp(-a))
	}
	v := math.Expm1(a) - alpha*y
	if v <= 0 {
		return math.Inf(-1)
	}
	return math.Log(v)
}

// expm1MinusX returns e^x − 1 − x for |x| < 1/4 by its Taylor series.
func expm1MinusX(x float64) float64 {
	term, sum := x*x/2, 0.0
	for n := 3; n < 40 && term != 0; n++ {
		sum += term
		term *= x / float64(n)
	}
	return sum
}

// log1pMinusX returns log(1+x) − x for |x| < 1/4 by its Taylor series.
func log1pMinusX(x float64) float64 {
	var sum float64
	p := x * x
	for n := 2; n < 80; n++ {
		t := p / float64(n)
		if n%2 == 0 {
			sum -= t
		} else {
			sum += t
		}
		if math.Abs(t) < 1e-18*math.Abs(sum) {
			break
		}
		p *= x
	}
	return sum
}

// EpsilonConversion turns RDP into (ε, δ)-DP.
type EpsilonConversion int

const (
	// ConversionImproved is the conversion of Balle et al. 2020 (Thm. 21) / Canonne, Kamath,
	// Steinke 2020 (Prop. 12), as in Google's dp_accounting:
	// ε = ρ(α) + log((α−1)/α) − (log δ + log α)/(α−1).
	ConversionImproved EpsilonConversion = iota
	// ConversionClassic is Mironov's 2017 conversion ε = ρ(α) + log(1/δ)/(α−1), as in TensorFlow
	// Privacy's original compute_rdp/get_privacy_spent.
	ConversionClassic
)

func (c EpsilonConversion) String() string {
	if c == ConversionClassic {
		return "classic"
	}
	return "improved"
}

// RDPToEpsilon converts a composed RDP curve (rdp[i] at orders[i]) into the smallest ε over
// the orders for the given δ, and returns that order.
func RDPToEpsilon(orders, rdp []float64, delta float64, conv EpsilonConversion) (eps, order float64, err error) {
	if err := checkDelta(delta); err != nil {
		return 0, 0, err
	}
	if len(orders) != len(rdp) || len(orders) == 0 {
		return 0, 0, fmt.Errorf("privacy: %d orders but %d RDP values", len(orders), len(rdp))
	}
	eps, order = math.Inf(1), math.NaN()
	logDelta := math.Log(delta)
	for i, a := range orders {
		r := rdp[i]
		if math.IsNaN(r) || r < 0 {
			return 0, 0, fmt.Errorf("privacy: RDP at order %v is %v", a, r)
		}
		var e float64
		switch conv {
		case ConversionClassic:
			e = r - logDelta/(a-1)
		default:
			e = r + math.Log1p(-1/a) - (logDelta+math.Log(a))/(a-1)
		}
		if e < eps {
			eps, order = e, a
		}
	}
	return math.Max(eps, 0), order, nil
}

func checkDelta(delta float64) error {
	if math.IsNaN(delta) || math.IsInf(delta, 0) {
		return fmt.Errorf("delta %v: %w", delta, ErrNonFinite)
	}
	if !(delta > 0 && delta < 1) {
		return fmt.Errorf("privacy: delta must be in (0, 1), got %v", delta)
	}
	return nil
}
