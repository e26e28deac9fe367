package fl

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"shoal/privacy"
)

// Placements of the DP noise.
const (
	PlacementCentral = "central" // the server noises the (secure) sum: trusts the server with noise, not data
	PlacementLocal   = "local"   // each client noises its own clipped update: trusts no one
)

// ErrBudgetExhausted is returned by ServerPrivacy.CheckBudget when the next round would spend
// more privacy than allowed; the engine stops before it.
var ErrBudgetExhausted = errors.New("privacy budget exhausted")

// ServerPrivacy is the server half of a differential-privacy mechanism: it sets the clip norm
// the clients use, turns the cohort's sum into the (noised) mean the strategy sees, and accounts.
// DPFedAvg is the mechanism of today; distributed DP (noise shares under the secure sum) is the
// next one this seam is for.
type ServerPrivacy interface {
	// Describe states the mechanism, its placement and parameters for the run report.
	Describe() string
	// CheckBudget returns an error wrapping ErrBudgetExhausted if running the round would take
	// the spent ε past the allowed maximum.
	CheckBudget(round int) error
	// ConfigureFit sets ClipNorm (and LocalNoiseStd, UnitWeights) in the clients' configuration.
	ConfigureFit(round int, cfg FitConfig) FitConfig
	// Finalize turns the sum of count clipped updates (each weighted 1) into the mean estimate,
	// adding central noise, and updates adaptive clipping from the unclipped count.
	Finalize(round int, sum []float64, count int, unclipped float64) ([]float32, error)
	// Account records that round ran and returns the (ε, δ) spent so far.
	Account(round int) (epsilon, delta float64, err error)
}

// DPConfig configures DP-FedAvg (McMahan et al. 2018) in the engine.
type DPConfig struct {
	Placement       string
	NoiseMultiplier float64 // z: noise standard deviation in units of the clip norm
	Clip            float64 // S: the L2 bound of every client's update (the initial S when adaptive)
	PerLayer        bool    // clip each layer to its share of S instead of the whole vector
	SamplingRate    float64 // q: Poisson sampling probability of each client per round
	Clients         int     // N: registered clients, so q·N clients are expected per round
	Delta           float64
	MaxEpsilon      float64 // stop before a round that would spend more (0: no limit)
	Accountant      privacy.Accountant
	Source          *privacy.Source // randomness of the server's noise
	// NoiseSeed, when non-zero, derives each round's noise from (seed, round) instead of Source:
	// reproducible, and a resumed run draws exactly the noise an uninterrupted one would. For
	// --seed simulations and tests only.
	NoiseSeed uint64
	// Adaptive, if set, moves S toward a quantile of the update norms (Andrew et al. 2021); its
	// noised count takes a share of the privacy budget, so the update sum gets less noise.
	Adaptive *privacy.AdaptiveClipper
	// Sensitivity maps the clip S to the largest L2 norm one client's contribution can have in
	// the sum the server noises: the secure sum's Sensitivity(S, dim), which exceeds S when the
	// protocol quantises. Central noise is z·Sensitivity(S), so that the ε the accountant reports
	// for z holds. Nil: the identity (a plain or exact sum).
	Sensitivity func(clip float64) float64
}

// DPFedAvg is the server half of DP-FedAvg: clip norm to clients, noise on the sum, the
// fixed-denominator mean, and the accountant. It implements ServerPrivacy.
type DPFedAvg struct {
	cfg DPConfig
	// valueZ is the noise multiplier of the update sum: z, or less under adaptive clipping.
	valueZ float64
}

var (
	_ ServerPrivacy = (*DPFedAvg)(nil)
	_ Stateful      = (*DPFedAvg)(nil)
)

// checkAccounting validates what every DP mechanism's accounting needs: Poisson rate q,
// population N, δ and the budget.
func checkAccounting(q float64, clients int, delta, maxEpsilon float64) error {
	switch {
	case !(q > 0 && q <= 1):
		return fmt.Errorf("sampling rate must be in (0, 1], got %v", q)
	case clients < 1:
		return fmt.Errorf("DP needs the number of clients, got %d", clients)
	case !(delta > 0 && delta < 1):
		return fmt.Errorf("δ must be in (0, 1), got %v", delta)
	case maxEpsilon < 0 || math.IsNaN(maxEpsilon):
		return fmt.Errorf("maximum ε must be ≥ 0, got %v", maxEpsilon)
	}
	return nil
}

// NewDPFedAvg validates the configuration.
func NewDPFedAvg(cfg DPConfig) (*DPFedAvg, error) {
	if err := checkAccounting(cfg.SamplingRate, cfg.Clients, cfg.Delta, cfg.MaxEpsilon); err != nil {
		return nil, err
	}
	switch {
	case cfg.Placement != PlacementCentral && cfg.Placement != PlacementLocal:
		return nil, fmt.Errorf("DP placement %q: want central or local", cfg.Placement)
	case !(cfg.NoiseMultiplier > 0) || math.IsInf(cfg.NoiseMultiplier, 0):
		return nil, fmt.Errorf("noise multiplier must be a positive finite number, got %v", cfg.NoiseMultiplier)
	case !(cfg.Clip > 0) || math.IsInf(cfg.Clip, 0):
		return nil, fmt.Errorf("clip norm must be a positive finite number, got %v", cfg.Clip)
	case cfg.Accountant == nil:
		return nil, errors.New("DP needs an accountant")
	case cfg.Source == nil && cfg.NoiseSeed == 0 && cfg.Placement == PlacementCentral:
		return nil, errors.New("central DP needs a noise source")
	}
	d := &DPFedAvg{cfg: cfg, valueZ: cfg.NoiseMultiplier}
	if cfg.Adaptive != nil {
		if cfg.Placement != PlacementCentral {
			return nil, errors.New("adaptive clipping needs central DP (its noised count is added by the server)")
		}
		z, err := cfg.Adaptive.ValueNoiseMultiplier(cfg.NoiseMultiplier)
		if err != nil {
			return nil, err
		}
		d.valueZ = z
	}
	if _, err := d.sensitivity(d.clip()); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *DPFedAvg) expected() float64 { return d.cfg.SamplingRate * float64(d.cfg.Clients) }

// accountingRate is the sampling rate the accountant may assume. Local noise protects each
// client on its own, and the server sees who took part, so local DP claims no amplification.
func (d *DPFedAvg) accountingRate() float64 {
	if d.cfg.Placement == PlacementLocal {
		return 1
	}
	return d.cfg.SamplingRate
}

func (d *DPFedAvg) clip() float64 {
	if d.cfg.Adaptive != nil {
		return d.cfg.Adaptive.Clip()
	}
	return d.cfg.Clip
}

// sensitivity returns the L2 sensitivity of the sum for clip s: Sensitivity(s), never below s.
func (d *DPFedAvg) sensitivity(s float64) (float64, error) {
	if d.cfg.Sensitivity == nil {
		return s, nil
	}
	v := d.cfg.Sensitivity(s)
	if !(v >= s) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("sensitivity %v for clip %v: must be finite and at least the clip", v, s)
	}
	return v, nil
}

// NoiseStd is the standard deviation of the central noise on the sum for the current clip,
// z·Sensitivity(S) (with z lowered for adaptive clipping's count); 0 for local noise.
func (d *DPFedAvg) NoiseStd() (float64, error) {
	if d.cfg.Placement != PlacementCentral {
		return 0, nil
	}
	sens, err := d.sensitivity(d.clip())
	if err != nil {
		return 0, err
	}
	return d.valueZ * sens, nil
}

// Describe states the mechanism for the run report.
func (d *DPFedAvg) Describe() string {
	s := fmt.Sprintf("DP-FedAvg, %s noise, noise multiplier z = %g, clip S = %g", d.cfg.Placement, d.cfg.NoiseMultiplier, d.cfg.Clip)
	if d.cfg.Adaptive != nil {
		s += " (adaptive)"
	}
	if d.cfg.PerLayer {
		s += " per layer"
	}
	if sens, err := d.sensitivity(d.cfg.Clip); err == nil && sens != d.cfg.Clip && d.cfg.Placement == PlacementCentral {
		s += fmt.Sprintf(", noise calibrated to the quantised sum's sensitivity %.6g (σ = z·%.6g)", sens, sens)
	}
	return s + fmt.Sprintf(", Poisson q = %g, δ = %g, %s accountant", d.cfg.SamplingRate, d.cfg.Delta, d.cfg.Accountant.Kind())
}

// CheckBudget refuses a round whose accounting would pass MaxEpsilon.
func (d *DPFedAvg) CheckBudget(round int) error {
	if d.cfg.MaxEpsilon == 0 {
		return nil
	}
	eps, err := d.cfg.Accountant.EpsilonAfter(d.accountingRate(), d.cfg.NoiseMultiplier, 1, d.cfg.Delta)
	if err != nil {
		return err
	}
	if eps > d.cfg.MaxEpsilon {
		return fmt.Errorf("%w: round %d would bring ε to %.4g > %g", ErrBudgetExhausted, round, eps, d.cfg.MaxEpsilon)
	}
	return nil
}

// ConfigureFit tells clients the clip norm (and, for local DP, their noise).
func (d *DPFedAvg) ConfigureFit(_ int, cfg FitConfig) FitConfig {
	s := d.clip()
	cfg.ClipNorm = float32(s)
	cfg.PerLayerClip = d.cfg.PerLayer
	cfg.UnitWeights = true
	if d.cfg.Placement == PlacementLocal {
		// Locally, a client's update may be replaced by any other in the S-ball: sensitivity 2S.
		cfg.LocalNoiseStd = float32(2 * d.cfg.NoiseMultiplier * s)
	}
	return cfg
}

// Finalize noises the sum (central) and divides by the expected cohort size q·N, the
// fixed-denominator estimator whose sensitivity does not depend on who took part.
func (d *DPFedAvg) Finalize(round int, sum []float64, count int, unclipped float64) ([]float32, error) {
	mean := make([]float32, len(sum))
	denom := d.expected()
	src := d.cfg.Source
	if d.cfg.NoiseSeed != 0 {
		src = privacy.NewSeededSource(d.cfg.NoiseSeed ^ uint64(round)*0x9e3779b97f4a7c15)
	}
	if d.cfg.Placement == PlacementCentral {
		// The noise is calibrated to the sensitivity of the sum actually released: a quantising
		// secure sum can lengthen a contribution beyond the clip S.
		s, err := d.sensitivity(d.clip())
		if err != nil {
			return nil, fmt.Errorf("round %d noise: %w", round, err)
		}
		noise, err := privacy.NewGaussianNoise(d.valueZ*s, s, len(sum))
		if err != nil {
			return nil, fmt.Errorf("round %d noise: %w", round, err)
		}
		if err := noise.Add64(mean, sum, src); err != nil {
			return nil, fmt.Errorf("round %d noise: %w", round, err)
		}
		if d.cfg.Adaptive != nil {
			if _, _, err := d.cfg.Adaptive.Update(unclipped-float64(count)/2, src); err != nil {
				return nil, fmt.Errorf("round %d adaptive clipping: %w", round, err)
			}
		}
	} else {
		denom = float64(max(count, 1)) // noise is already in every update: no fixed denominator needed
		for j, v := range sum {
			mean[j] = float32(v)
		}
	}
	inv := float32(1 / denom)
	for j := range mean {
		mean[j] *= inv
	}
	return mean, nil
}

// Account composes one round and reports the (ε, δ) spent so far.
func (d *DPFedAvg) Account(int) (float64, float64, error) {
	if err := d.cfg.Accountant.Compose(d.accountingRate(), d.cfg.NoiseMultiplier, 1); err != nil {
		return 0, 0, err
	}
	eps, err := d.cfg.Accountant.Epsilon(d.cfg.Delta)
	return eps, d.cfg.Delta, err
}

type dpState struct {
	Accountant json.RawMessage `json:"accountant"`
	Adaptive   json.RawMessage `json:"adaptive,omitempty"`
}

// SaveState saves what a resumed run needs to continue the privacy count exactly: the
// accountant's composition history and the adaptive clip.
func (d *DPFedAvg) SaveState() ([]byte, error) {
	var st dpState
	var err error
	if st.Accountant, err = d.cfg.Accountant.MarshalJSON(); err != nil {
		return nil, fmt.Errorf("save accountant: %w", err)
	}
	if d.cfg.Adaptive != nil {
		if st.Adaptive, err = d.cfg.Adaptive.MarshalJSON(); err != nil {
			return nil, fmt.Errorf("save adaptive clip: %w", err)
		}
	}
	return json.Marshal(st)
}

// RestoreState continues from a state saved by SaveState.
func (d *DPFedAvg) RestoreState(b []byte) error {
	var st dpState
	if err := json.Unmarshal(b, &st); err != nil || len(st.Accountant) == 0 {
		return fmt.Errorf("privacy state: not a saved DP state")
	}
	acct, err := privacy.RestoreAccountant(st.Accountant)
	if err != nil {
		return err
	}
	if acct.Kind() != d.cfg.Accountant.Kind() {
		return fmt.Errorf("privacy state: saved by a %s accountant, this run uses %s", acct.Kind(), d.cfg.Accountant.Kind())
	}
	if (d.cfg.Adaptive != nil) != (len(st.Adaptive) > 0) {
		return errors.New("privacy state: adaptive clipping is on in only one of the saved run and this one")
	}
	if d.cfg.Adaptive != nil {
		a, err := privacy.RestoreAdaptiveClipper(st.Adaptive)
		if err != nil {
			return err
		}
		d.cfg.Adaptive = a
	}
	d.cfg.Accountant = acct
	return nil
}
