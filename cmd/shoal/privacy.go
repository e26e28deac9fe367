package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"time"

	"shoal/privacy"
)

func init() {
	register(command{words: "privacy epsilon", summary: "ε spent by T steps of the Poisson-subsampled Gaussian, Skellam or distributed discrete Gaussian mechanism", run: runPrivacyEpsilon})
	register(command{words: "privacy noise", summary: "smallest noise multiplier that keeps T steps within a target ε (any mechanism)", run: runPrivacyNoise})
}

// privacyFlags are the mechanism parameters both privacy subcommands share.
type privacyFlags struct {
	q, delta   float64
	steps      int
	accountant string
	conversion string
	json       bool
	// Distributed DP (--mechanism skellam|ddgauss).
	mechanism   string
	bits, dim   int
	cohort      float64
	minClients  int
	clip        float64
	modClipProb float64
	countStddev float64
}

func (p *privacyFlags) register(fs *flag.FlagSet) {
	fs.Float64Var(&p.q, "sampling-rate", math.NaN(), "Poisson sampling rate q ∈ (0, 1]: each client's chance to join a round (required)")
	fs.IntVar(&p.steps, "steps", 0, "number of rounds (steps) T ≥ 1 (required)")
	fs.Float64Var(&p.delta, "delta", math.NaN(), "δ ∈ (0, 1) (required)")
	fs.StringVar(&p.accountant, "accountant", "rdp", "rdp (Rényi DP, Mironov et al. 2019) or pld (privacy loss distribution, tighter)")
	fs.StringVar(&p.conversion, "conversion", "improved", "RDP→(ε, δ) conversion for --accountant rdp: improved (Balle et al. 2020) or classic")
	fs.BoolVar(&p.json, "json", false, "print one JSON object on stdout")
	fs.StringVar(&p.mechanism, "mechanism", "gaussian", "gaussian (central DP), skellam or ddgauss (distributed DP: integer noise shares under secure aggregation)")
	fs.IntVar(&p.bits, "bits", 16, "distributed DP: the secure sum's ring Z_{2^b}, b in [4, 22]")
	fs.IntVar(&p.dim, "dim", 0, "distributed DP: model parameters d (required with skellam or ddgauss)")
	fs.Float64Var(&p.cohort, "clients-per-round", 0, "distributed DP: expected clients per round n, against which the quantisation step is sized (required with skellam or ddgauss)")
	fs.IntVar(&p.minClients, "min-clients", 0, "distributed DP: noise shares M in a released sum (each client adds 1/M of the noise; default: --clients-per-round rounded down)")
	fs.Float64Var(&p.clip, "clip", 1, "distributed DP: L2 clip S (ε does not depend on it: γ scales with S; it sets the reported γ)")
	fs.Float64Var(&p.modClipProb, "modclip-prob", privacy.DefaultModClipProb, "distributed DP: probability that a coordinate of the sum wraps around the ring")
	fs.Float64Var(&p.countStddev, "count-stddev", 0, "distributed DP with adaptive clipping: the clipped count's noise stddev σ_b, composed with the update as the engine does (simulate uses 0.05 × clients per round; 0: no adaptive clipping)")
}

func (p *privacyFlags) distributed() bool { return p.mechanism != "gaussian" }

// check validates the shared flags, turning bad values into usage errors.
func (p *privacyFlags) check() error {
	if math.IsNaN(p.q) {
		return usageErrorf("--sampling-rate is required")
	}
	if !(p.q > 0 && p.q <= 1) {
		return usageErrorf("--sampling-rate must be in (0, 1], got %v", p.q)
	}
	if p.steps < 1 {
		return usageErrorf("--steps must be a positive integer, got %d", p.steps)
	}
	if math.IsNaN(p.delta) {
		return usageErrorf("--delta is required")
	}
	if !(p.delta > 0 && p.delta < 1) {
		return usageErrorf("--delta must be in (0, 1), got %v", p.delta)
	}
	switch p.accountant {
	case "rdp", "pld":
	default:
		return usageErrorf("--accountant must be rdp or pld, got %q", p.accountant)
	}
	switch p.conversion {
	case "improved", "classic":
	default:
		return usageErrorf("--conversion must be improved or classic, got %q", p.conversion)
	}
	if p.conversion == "classic" && p.accountant != "rdp" {
		return usageErrorf("--conversion applies to --accountant rdp only")
	}
	switch p.mechanism {
	case "gaussian":
		if p.countStddev != 0 {
			return usageErrorf("--count-stddev applies to --mechanism skellam|ddgauss: under central DP the adaptive clip's count is inside --noise-multiplier already")
		}
		return nil
	case privacy.MechanismSkellam, privacy.MechanismDDGauss:
	default:
		return usageErrorf("--mechanism must be gaussian, skellam or ddgauss, got %q", p.mechanism)
	}
	if p.accountant != "rdp" {
		return usageErrorf("--mechanism %s needs --accountant rdp (the distributed mechanisms' bounds are Rényi bounds)", p.mechanism)
	}
	if p.dim < 1 {
		return usageErrorf("--dim must be a positive integer with --mechanism %s, got %d", p.mechanism, p.dim)
	}
	if !(p.cohort >= 1) || math.IsInf(p.cohort, 0) {
		return usageErrorf("--clients-per-round must be a finite number ≥ 1 with --mechanism %s, got %v", p.mechanism, p.cohort)
	}
	if p.minClients == 0 {
		p.minClients = int(p.cohort)
	}
	if p.minClients < 1 || float64(p.minClients) > p.cohort {
		return usageErrorf("--min-clients must be in [1, --clients-per-round = %v], got %d", p.cohort, p.minClients)
	}
	if p.bits < 4 || p.bits > privacy.MaxDDPBits {
		return usageErrorf("--bits must be in [4, %d], got %d", privacy.MaxDDPBits, p.bits)
	}
	if !(p.clip > 0) || math.IsInf(p.clip, 0) {
		return usageErrorf("--clip must be a positive finite number, got %v", p.clip)
	}
	if !(p.modClipProb > 0 && p.modClipProb < 1) {
		return usageErrorf("--modclip-prob must be in (0, 1), got %v", p.modClipProb)
	}
	if !(p.countStddev >= 0) || math.IsInf(p.countStddev, 0) {
		return usageErrorf("--count-stddev must be a finite number ≥ 0, got %v", p.countStddev)
	}
	return nil
}

// ddpAudit is what an auditor needs to recompute a distributed-DP step's ε independently: the
// derived parameters of the run (privacy.DDPParams) and the summed noise the accountant bounds.
type ddpAudit struct {
	Mechanism string  `json:"mechanism"`
	Bits      int     `json:"bits"`
	Dim       int     `json:"dim"`
	PaddedDim int     `json:"padded_dim"`
	Clip      float64 `json:"clip"`
	Cohort    float64 `json:"clients_per_round"`
	Shares    int     `json:"shares"` // noise shares in the released sum (--min-clients)
	Gamma     float64 `json:"gamma"`  // quantisation step γ
	K         float64 `json:"k_stddevs"`
	Beta      float64 `json:"beta"` // conditional rounding's β
	// L2 and L1 sensitivities of one client's integer vector after rotation, scaling by 1/γ
	// and conditional rounding.
	L2 float64 `json:"l2_sensitivity"`
	L1 float64 `json:"l1_sensitivity"`
	// ShareParam is one client's noise parameter per coordinate (Skellam: its variance;
	// ddgauss: its σ²).
	ShareParam float64 `json:"share_param"`
	// CountStddev and CountShare: the adaptive clip's count query (σ_b, and each share's noise
	// parameter for it), composed with the update as a second sensitivity-1 query.
	CountStddev float64 `json:"count_stddev,omitempty"`
	CountShare  float64 `json:"count_share,omitempty"`
	// Summed noise per coordinate, in the integer units of the sum: Skellam Sk(μ, μ) (variance
	// 2μ); ddgauss, the sum of Shares N_Z(0, σ²), close to N_Z(0, Σσ²) (σ here is √(Shares·σ²))
	// with Kairouz et al.'s τ.
	SkellamMu    *float64 `json:"skellam_mu,omitempty"`
	DDGaussSigma *float64 `json:"ddgauss_sigma,omitempty"`
	Tau          *float64 `json:"tau,omitempty"`
	// Bound names the per-step RDP bound and the subsampling theorem used.
	Bound string `json:"bound"`
}

// ddpEvent derives the parameters of the distributed mechanism at noise multiplier z.
func (p *privacyFlags) ddpEvent(z float64) (privacy.DDPParams, privacy.DiscreteEvent, error) {
	c := privacy.DDPConfig{Mechanism: p.mechanism, Bits: p.bits, Clip: p.clip, NoiseMultiplier: z,
		MinClients: p.minClients, Cohort: p.cohort, ModClipProb: p.modClipProb, CountStddev: p.countStddev}
	d, err := c.Params(p.dim)
	if err != nil {
		return privacy.DDPParams{}, privacy.DiscreteEvent{}, err
	}
	return d, d.Event(p.minClients), nil
}

// ddpSpent is ε of steps steps of the distributed mechanism at noise multiplier z, on the RDP
// accountant with the chosen conversion.
func (p *privacyFlags) ddpSpent(z float64) (privacy.RDPSpent, *ddpAudit, error) {
	d, ev, err := p.ddpEvent(z)
	if err != nil {
		return privacy.RDPSpent{}, nil, err
	}
	conv := privacy.ConversionImproved
	if p.conversion == "classic" {
		conv = privacy.ConversionClassic
	}
	s, err := privacy.NewRDPAccountant(conv).EpsilonAfterEvent(privacy.DiscreteStep(ev, p.q, p.steps), p.delta)
	if err != nil {
		return privacy.RDPSpent{}, nil, fmt.Errorf("rdp accountant: %w", err)
	}
	a := &ddpAudit{Mechanism: p.mechanism, Bits: p.bits, Dim: p.dim, PaddedDim: d.PaddedDim, Clip: p.clip, Cohort: p.cohort,
		Shares: p.minClients, Gamma: d.Gamma, K: d.K, Beta: d.Beta, L2: d.L2, L1: d.L1, ShareParam: d.ShareParam,
		CountStddev: p.countStddev, CountShare: d.CountShare}
	if p.mechanism == privacy.MechanismSkellam {
		mu := ev.Variance() / 2
		a.SkellamMu = &mu
		a.Bound = "Agarwal-Kairouz-Liu 2021 Thm 3.5 (Skellam), Zhu-Wang 2019 Thm 6 (Poisson subsampling), integer orders"
	} else {
		sigma, tau := math.Sqrt(ev.Variance()), ev.Tau()
		a.DDGaussSigma, a.Tau = &sigma, &tau
		a.Bound = "Kairouz-Liu-Steinke 2021 Prop 14 (distributed discrete Gaussian), Zhu-Wang 2019 Thm 6 (Poisson subsampling), integer orders"
	}
	return s, a, nil
}

func (p *privacyFlags) newAccountant() (privacy.Accountant, error) {
	if p.accountant == "rdp" && p.conversion == "classic" {
		return privacy.NewRDPAccountant(privacy.ConversionClassic), nil
	}
	return privacy.NewAccountant(p.accountant)
}

type privacyEpsilonJSON struct {
	Epsilon         float64   `json:"epsilon"`
	Delta           float64   `json:"delta"`
	SamplingRate    float64   `json:"sampling_rate"`
	NoiseMultiplier float64   `json:"noise_multiplier"`
	Steps           int       `json:"steps"`
	Accountant      string    `json:"accountant"`
	Conversion      string    `json:"conversion,omitempty"`
	Order           *float64  `json:"order,omitempty"` // best Rényi order (rdp only)
	Mechanism       string    `json:"mechanism"`
	DDP             *ddpAudit `json:"distributed,omitempty"` // skellam and ddgauss only
	Seconds         float64   `json:"seconds"`
}

func runPrivacyEpsilon(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("privacy epsilon", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var p privacyFlags
	p.register(fs)
	z := fs.Float64("noise-multiplier", math.NaN(), "noise multiplier z > 0: noise stddev in units of the clip norm (required)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := p.check(); err != nil {
		return err
	}
	if math.IsNaN(*z) {
		return usageErrorf("--noise-multiplier is required")
	}
	if !(*z > 0) || math.IsInf(*z, 0) {
		return usageErrorf("--noise-multiplier must be a positive finite number, got %v", *z)
	}
	start := time.Now()
	out := privacyEpsilonJSON{Delta: p.delta, SamplingRate: p.q, NoiseMultiplier: *z, Steps: p.steps, Accountant: p.accountant, Mechanism: p.mechanism}
	if p.distributed() {
		s, audit, err := p.ddpSpent(*z)
		if err != nil {
			return usageErrorf("--mechanism %s: %v", p.mechanism, err)
		}
		out.Epsilon, out.Order, out.Conversion, out.DDP = s.Epsilon, &s.Order, p.conversion, audit
	} else if p.accountant == "rdp" {
		conv := privacy.ConversionImproved
		if p.conversion == "classic" {
			conv = privacy.ConversionClassic
		}
		a := privacy.NewRDPAccountant(conv)
		if err := a.Compose(p.q, *z, p.steps); err != nil {
			return usageErrorf("%v", err)
		}
		s, err := a.Spent(p.delta)
		if err != nil {
			return fmt.Errorf("rdp accountant: %w", err)
		}
		out.Epsilon, out.Order, out.Conversion = s.Epsilon, &s.Order, conv.String()
	} else {
		a, err := p.newAccountant()
		if err != nil {
			return err
		}
		if err := a.Compose(p.q, *z, p.steps); err != nil {
			return usageErrorf("%v", err)
		}
		if out.Epsilon, err = a.Epsilon(p.delta); err != nil {
			return fmt.Errorf("pld accountant: %w", err)
		}
	}
	out.Seconds = time.Since(start).Seconds()
	if p.json {
		return json.NewEncoder(stdout).Encode(out)
	}
	fmt.Fprintf(stdout, "ε = %.4f at δ = %g after %d steps with sampling rate %g and noise multiplier %g (%s mechanism, %s accountant",
		out.Epsilon, p.delta, p.steps, p.q, *z, p.mechanism, p.accountant)
	if a := out.DDP; a != nil {
		fmt.Fprintf(stdout, ", b = %d, d = %d, %g clients per round, %d shares, γ = %.4g, Δ2 = %.4g, Δ1 = %.4g", a.Bits, a.Dim, a.Cohort, a.Shares, a.Gamma, a.L2, a.L1)
	}
	if out.Order != nil {
		fmt.Fprintf(stdout, ", %s conversion, best order α = %.3f", out.Conversion, *out.Order)
	}
	fmt.Fprintln(stdout, ")")
	return nil
}

type privacyNoiseJSON struct {
	NoiseMultiplier float64 `json:"noise_multiplier"`
	Epsilon         float64 `json:"epsilon"` // ε actually spent at that noise multiplier
	TargetEpsilon   float64 `json:"target_epsilon"`
	Delta           float64 `json:"delta"`
	SamplingRate    float64 `json:"sampling_rate"`
	Steps           int     `json:"steps"`
	Accountant      string  `json:"accountant"`
	Mechanism       string  `json:"mechanism"`
	// Order and DDP describe the calibrated mechanism (distributed DP), as privacy epsilon does.
	Order   *float64  `json:"order,omitempty"`
	DDP     *ddpAudit `json:"distributed,omitempty"`
	Seconds float64   `json:"seconds"`
}

func runPrivacyNoise(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("privacy noise", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var p privacyFlags
	p.register(fs)
	target := fs.Float64("target-epsilon", math.NaN(), "the ε not to exceed, > 0 (required)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := p.check(); err != nil {
		return err
	}
	if math.IsNaN(*target) {
		return usageErrorf("--target-epsilon is required")
	}
	if !(*target > 0) || math.IsInf(*target, 0) {
		return usageErrorf("--target-epsilon must be a positive finite number, got %v", *target)
	}
	if p.conversion != "improved" {
		return usageErrorf("privacy noise calibrates with the improved conversion only")
	}
	start := time.Now()
	if p.distributed() {
		z, err := privacy.CalibrateNoiseFunc(*target, func(z float64) (float64, error) {
			s, _, err := p.ddpSpent(z)
			if err != nil {
				if _, _, perr := p.ddpEvent(z); perr != nil {
					return math.Inf(1), nil // the mechanism cannot run at this z (e.g. a ddgauss share below σ = 1/2)
				}
				return 0, err
			}
			return s.Epsilon, nil
		})
		if err != nil {
			return fmt.Errorf("calibrate noise: %w", err)
		}
		s, audit, err := p.ddpSpent(z)
		if err != nil {
			return fmt.Errorf("check calibrated noise: %w", err)
		}
		out := privacyNoiseJSON{NoiseMultiplier: z, Epsilon: s.Epsilon, TargetEpsilon: *target, Delta: p.delta, SamplingRate: p.q,
			Steps: p.steps, Accountant: p.accountant, Mechanism: p.mechanism, Order: &s.Order, DDP: audit, Seconds: time.Since(start).Seconds()}
		if p.json {
			return json.NewEncoder(stdout).Encode(out)
		}
		fmt.Fprintf(stdout, "noise multiplier z = %.4f keeps %d steps at sampling rate %g within ε = %g at δ = %g (spends ε = %.4f, %s mechanism, b = %d, γ = %.4g, Δ2 = %.4g, %d shares)\n",
			z, p.steps, p.q, *target, p.delta, s.Epsilon, p.mechanism, audit.Bits, audit.Gamma, audit.L2, audit.Shares)
		return nil
	}
	z, err := privacy.CalibrateNoise(p.accountant, *target, p.q, p.steps, p.delta)
	if err != nil {
		return fmt.Errorf("calibrate noise: %w", err)
	}
	a, err := p.newAccountant()
	if err != nil {
		return err
	}
	eps, err := a.EpsilonAfter(p.q, z, p.steps, p.delta)
	if err != nil {
		return fmt.Errorf("check calibrated noise: %w", err)
	}
	out := privacyNoiseJSON{NoiseMultiplier: z, Epsilon: eps, TargetEpsilon: *target, Delta: p.delta,
		SamplingRate: p.q, Steps: p.steps, Accountant: p.accountant, Mechanism: p.mechanism, Seconds: time.Since(start).Seconds()}
	if p.json {
		return json.NewEncoder(stdout).Encode(out)
	}
	fmt.Fprintf(stdout, "noise multiplier z = %.4f keeps %d steps at sampling rate %g within ε = %g at δ = %g (spends ε = %.4f, %s accountant)\n",
		z, p.steps, p.q, *target, p.delta, eps, p.accountant)
	return nil
}
