package privacy

import (
	"encoding/json"
	"fmt"
	"math"
)

// Adaptive clipping (Andrew, Thakkar, McMahan, Ramaswamy 2021, "Differentially Private Learning
// with Adaptive Clipping"): instead of a fixed S, track the target quantile γ of the clients'
// update norms. Each round every sampled client also reports b_i = 1 if its update norm was at
// most the current clip C (sent centred, b_i − ½, so one client moves the sum by at most ½; it
// goes through the same sum, secure or not, as the updates). The server noises the sum with
// N(0, σ_b²), estimates the unclipped fraction b̄ = (Σ(b_i − ½) + noise)/n̄ + ½ with the same
// fixed denominator n̄ = qN, and updates geometrically: C ← C·exp(−η(b̄ − γ)).
//
// Privacy: the round releases two Gaussian queries of the same clients, the update sum with
// noise multiplier z_Δ and the count with noise multiplier 2σ_b (sensitivity ½). Together they
// are one Gaussian mechanism of multiplier z with z⁻² = z_Δ⁻² + (2σ_b)⁻², so to keep the
// accountant's z the update noise must use z_Δ = (z⁻² − (2σ_b)⁻²)^{−½} (ValueNoiseMultiplier).

// AdaptiveClipConfig parameterises adaptive clipping; the defaults are those of the paper's
// reference implementation (TensorFlow Federated).
type AdaptiveClipConfig struct {
	InitialClip     float64 `json:"initial_clip"`      // C₀, default 0.1
	TargetQuantile  float64 `json:"target_quantile"`   // γ, default 0.5
	LearningRate    float64 `json:"learning_rate"`     // η, default 0.2
	CountStddev     float64 `json:"count_stddev"`      // σ_b, default 0.05 × ExpectedClients
	ExpectedClients float64 `json:"expected_clients"`  // n̄ = qN, the fixed denominator
	MinClip         float64 `json:"min_clip,omitzero"` // floor on C (0: none beyond > 0)
}

// DefaultAdaptiveClipConfig returns the paper's defaults for n̄ expected clients per round.
func DefaultAdaptiveClipConfig(expectedClients float64) AdaptiveClipConfig {
	return AdaptiveClipConfig{
		InitialClip:     0.1,
		TargetQuantile:  0.5,
		LearningRate:    0.2,
		CountStddev:     0.05 * expectedClients,
		ExpectedClients: expectedClients,
	}
}

func (c AdaptiveClipConfig) check() error {
	if err := checkPositiveFinite("initial clip", c.InitialClip); err != nil {
		return err
	}
	if math.IsNaN(c.TargetQuantile) || c.TargetQuantile < 0 || c.TargetQuantile > 1 {
		return fmt.Errorf("privacy: target quantile must be in [0, 1], got %v", c.TargetQuantile)
	}
	if err := checkPositiveFinite("clip learning rate", c.LearningRate); err != nil {
		return err
	}
	if err := checkPositiveFinite("clipped-count noise stddev", c.CountStddev); err != nil {
		return err
	}
	if err := checkPositiveFinite("expected clients per round", c.ExpectedClients); err != nil {
		return err
	}
	if math.IsNaN(c.MinClip) || c.MinClip < 0 || math.IsInf(c.MinClip, 0) {
		return fmt.Errorf("privacy: minimum clip must be finite and ≥ 0, got %v", c.MinClip)
	}
	return nil
}

// AdaptiveClipper holds the current clip C. It is server-side state: save it with the run
// (MarshalJSON) and restore it (RestoreAdaptiveClipper) to resume.
type AdaptiveClipper struct {
	cfg  AdaptiveClipConfig
	clip float64
}

// NewAdaptiveClipper starts at cfg.InitialClip.
func NewAdaptiveClipper(cfg AdaptiveClipConfig) (*AdaptiveClipper, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return &AdaptiveClipper{cfg: cfg, clip: cfg.InitialClip}, nil
}

// Clip is the clip C to use this round.
func (a *AdaptiveClipper) Clip() float64 { return a.clip }

// Config returns the configuration.
func (a *AdaptiveClipper) Config() AdaptiveClipConfig { return a.cfg }

// Indicator is what a client contributes to the count: +½ if its pre-clip update norm was at
// most clip (the clip it was sent), −½ otherwise.
func Indicator(norm, clip float64) float64 {
	if norm <= clip {
		return 0.5
	}
	return -0.5
}

// ValueNoiseMultiplier returns z_Δ = (z⁻² − (2σ_b)⁻²)^{−½}, the noise multiplier for the update
// sum that, together with the count query, makes the round a Gaussian mechanism of multiplier z
// (the z the accountant composes). It fails when the count noise is too small for z: z_Δ would
// be infinite (2σ_b ≤ z) — raise CountStddev or lower z.
func (a *AdaptiveClipper) ValueNoiseMultiplier(z float64) (float64, error) {
	if err := checkPositiveFinite("noise multiplier", z); err != nil {
		return 0, err
	}
	countZ := 2 * a.cfg.CountStddev
	rest := 1/(z*z) - 1/(countZ*countZ)
	if !(rest > 0) {
		return 0, fmt.Errorf("privacy: adaptive clipping: the count noise stddev %v (multiplier %v) is too small for total noise multiplier %v: it alone would spend more than the whole budget; need count stddev > %v", a.cfg.CountStddev, countZ, z, z/2)
	}
	return 1 / math.Sqrt(rest), nil
}

// Update takes the sum over the round's clients of Indicator(norm, Clip()), noises it with
// N(0, σ_b²) from src (exact lattice Gaussian), moves the clip and returns the new clip and the
// noised unclipped fraction b̄.
func (a *AdaptiveClipper) Update(indicatorSum float64, src *Source) (clip, unclippedFraction float64, err error) {
	if math.IsNaN(indicatorSum) || math.IsInf(indicatorSum, 0) {
		return a.clip, 0, fmt.Errorf("privacy: adaptive clip update: indicator sum %v: %w", indicatorSum, ErrNonFinite)
	}
	g, err := NewGaussianNoise(a.cfg.CountStddev, 0.5, 1)
	if err != nil {
		return a.clip, 0, fmt.Errorf("privacy: adaptive clip update: %w", err)
	}
	var noised [1]float32
	if err := g.Add64(noised[:], []float64{indicatorSum}, src); err != nil {
		return a.clip, 0, fmt.Errorf("privacy: adaptive clip update: %w", err)
	}
	return a.UpdateNoised(float64(noised[0]))
}

// UpdateNoised moves the clip from a sum of indicators that already carries its noise: under
// distributed DP the clients' count-noise shares are inside the secure sum (DDPConfig.CountStddev),
// and the server never sees the count without them.
func (a *AdaptiveClipper) UpdateNoised(noisedSum float64) (clip, unclippedFraction float64, err error) {
	if math.IsNaN(noisedSum) || math.IsInf(noisedSum, 0) {
		return a.clip, 0, fmt.Errorf("privacy: adaptive clip update: noised count %v: %w", noisedSum, ErrNonFinite)
	}
	frac := noisedSum/a.cfg.ExpectedClients + 0.5
	next := a.clip * math.Exp(-a.cfg.LearningRate*(frac-a.cfg.TargetQuantile))
	if a.cfg.MinClip > 0 {
		next = math.Max(next, a.cfg.MinClip)
	}
	if !(next > 0) || math.IsInf(next, 0) {
		return a.clip, frac, fmt.Errorf("privacy: adaptive clip update: clip would become %v", next)
	}
	a.clip = next
	return next, frac, nil
}

type adaptiveState struct {
	Config AdaptiveClipConfig `json:"config"`
	Clip   float64            `json:"clip"`
}

// MarshalJSON saves the configuration and the current clip.
func (a *AdaptiveClipper) MarshalJSON() ([]byte, error) {
	return json.Marshal(adaptiveState{Config: a.cfg, Clip: a.clip})
}

// RestoreAdaptiveClipper rebuilds a clipper saved with MarshalJSON.
func RestoreAdaptiveClipper(data []byte) (*AdaptiveClipper, error) {
	var st adaptiveState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("privacy: restore adaptive clipper: %w", err)
	}
	a, err := NewAdaptiveClipper(st.Config)
	if err != nil {
		return nil, fmt.Errorf("privacy: restore adaptive clipper: %w", err)
	}
	if err := checkPositiveFinite("clip", st.Clip); err != nil {
		return nil, fmt.Errorf("privacy: restore adaptive clipper: %w", err)
	}
	a.clip = st.Clip
	return a, nil
}
