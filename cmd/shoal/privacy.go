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
	register(command{words: "privacy epsilon", summary: "ε spent by T steps of the Poisson-subsampled Gaussian mechanism (RDP or PLD)", run: runPrivacyEpsilon})
	register(command{words: "privacy noise", summary: "smallest noise multiplier that keeps T steps within a target ε", run: runPrivacyNoise})
}

// privacyFlags are the mechanism parameters both privacy subcommands share.
type privacyFlags struct {
	q, delta   float64
	steps      int
	accountant string
	conversion string
	json       bool
}

func (p *privacyFlags) register(fs *flag.FlagSet) {
	fs.Float64Var(&p.q, "sampling-rate", math.NaN(), "Poisson sampling rate q ∈ (0, 1]: each client's chance to join a round (required)")
	fs.IntVar(&p.steps, "steps", 0, "number of rounds (steps) T ≥ 1 (required)")
	fs.Float64Var(&p.delta, "delta", math.NaN(), "δ ∈ (0, 1) (required)")
	fs.StringVar(&p.accountant, "accountant", "rdp", "rdp (Rényi DP, Mironov et al. 2019) or pld (privacy loss distribution, tighter)")
	fs.StringVar(&p.conversion, "conversion", "improved", "RDP→(ε, δ) conversion for --accountant rdp: improved (Balle et al. 2020) or classic")
	fs.BoolVar(&p.json, "json", false, "print one JSON object on stdout")
}

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
	return nil
}

func (p *privacyFlags) newAccountant() (privacy.Accountant, error) {
	if p.accountant == "rdp" && p.conversion == "classic" {
		return privacy.NewRDPAccountant(privacy.ConversionClassic), nil
	}
	return privacy.NewAccountant(p.accountant)
}

type privacyEpsilonJSON struct {
	Epsilon         float64  `json:"epsilon"`
	Delta           float64  `json:"delta"`
	SamplingRate    float64  `json:"sampling_rate"`
	NoiseMultiplier float64  `json:"noise_multiplier"`
	Steps           int      `json:"steps"`
	Accountant      string   `json:"accountant"`
	Conversion      string   `json:"conversion,omitempty"`
	Order           *float64 `json:"order,omitempty"` // best Rényi order (rdp only)
	Seconds         float64  `json:"seconds"`
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
	out := privacyEpsilonJSON{Delta: p.delta, SamplingRate: p.q, NoiseMultiplier: *z, Steps: p.steps, Accountant: p.accountant}
	if p.accountant == "rdp" {
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
	fmt.Fprintf(stdout, "ε = %.4f at δ = %g after %d steps with sampling rate %g and noise multiplier %g (%s accountant",
		out.Epsilon, p.delta, p.steps, p.q, *z, p.accountant)
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
	Seconds         float64 `json:"seconds"`
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
		SamplingRate: p.q, Steps: p.steps, Accountant: p.accountant, Seconds: time.Since(start).Seconds()}
	if p.json {
		return json.NewEncoder(stdout).Encode(out)
	}
	fmt.Fprintf(stdout, "noise multiplier z = %.4f keeps %d steps at sampling rate %g within ε = %g at δ = %g (spends ε = %.4f, %s accountant)\n",
		z, p.steps, p.q, *target, p.delta, eps, p.accountant)
	return nil
}
