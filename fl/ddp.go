package fl

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"shoal/privacy"
)

// PlacementDistributed is distributed DP: each client adds a share of integer noise to its
// quantised update inside the secure sum, so the server never sees an un-noised sum.
const PlacementDistributed = "distributed"

// DistributedDPConfig configures the server half of distributed DP. The noise itself is added
// by the clients' secure-sum halves (securesum.Spec.DDP carries the same privacy.DDPConfig).
type DistributedDPConfig struct {
	DDP          privacy.DDPConfig
	Dim          int     // model parameters, which fix the padding and γ
	SamplingRate float64 // q: Poisson sampling probability per client per round
	Clients      int     // N: registered clients
	Delta        float64
	MaxEpsilon   float64 // stop before a round that would spend more (0: no limit)
	Accountant   *privacy.RDPAccountant
	// Adaptive, if set, moves the clip toward a quantile of the update norms from the noised
	// count the secure sum releases (DDP.CountStddev must be its CountStddev, > 0); the secure
	// sum takes each round's clip from Clip (securesum.SecAgg.SetDDPClip).
	Adaptive *privacy.AdaptiveClipper
}

// DistributedDP is the server half of distributed DP: it sets the clients' clip and unit
// weights, turns the (already noised) secure sum into the fixed-denominator mean, and accounts
// each round with the number of noise shares actually in its sum. It implements ServerPrivacy.
type DistributedDP struct {
	cfg    DistributedDPConfig
	params privacy.DDPParams
	// shares[round] is the number of noise shares in the round's released sum.
	shares map[int]int

	mu    sync.Mutex
	clips map[int]float64 // the clip each round was configured with (adaptive clipping)
}

var (
	_ ServerPrivacy = (*DistributedDP)(nil)
	_ Stateful      = (*DistributedDP)(nil)
)

// NewDistributedDP validates the configuration and derives the round parameters.
func NewDistributedDP(cfg DistributedDPConfig) (*DistributedDP, error) {
	if err := checkAccounting(cfg.SamplingRate, cfg.Clients, cfg.Delta, cfg.MaxEpsilon); err != nil {
		return nil, err
	}
	if cfg.Accountant == nil {
		return nil, errors.New("distributed DP needs an RDP accountant")
	}
	p, err := cfg.DDP.Params(cfg.Dim)
	if err != nil {
		return nil, fmt.Errorf("distributed DP: %w", err)
	}
	switch {
	case cfg.Adaptive != nil && cfg.DDP.CountStddev != cfg.Adaptive.Config().CountStddev:
		return nil, fmt.Errorf("distributed DP: the count noise of the secure sum (%v) is not the adaptive clipper's (%v)", cfg.DDP.CountStddev, cfg.Adaptive.Config().CountStddev)
	case cfg.Adaptive == nil && cfg.DDP.CountStddev != 0:
		return nil, errors.New("distributed DP: a count noise without adaptive clipping")
	case cfg.Adaptive != nil && cfg.Adaptive.Clip() != cfg.DDP.Clip:
		return nil, fmt.Errorf("distributed DP: initial clip %v, the adaptive clipper starts at %v", cfg.DDP.Clip, cfg.Adaptive.Clip())
	}
	return &DistributedDP{cfg: cfg, params: p, shares: map[int]int{}, clips: map[int]float64{}}, nil
}

// Clip is the clip of round (the one ConfigureFit sent its clients): what the secure sum
// announces and derives the round's γ and noise shares from.
func (d *DistributedDP) Clip(round int) float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.clips[round]; ok {
		return c
	}
	return d.currentClip()
}

func (d *DistributedDP) currentClip() float64 {
	if d.cfg.Adaptive != nil {
		return d.cfg.Adaptive.Clip()
	}
	return d.params.Clip
}

// roundParams are the parameters of round (its clip under adaptive clipping).
func (d *DistributedDP) roundParams(round int) (privacy.DDPParams, error) {
	if d.cfg.Adaptive == nil {
		return d.params, nil
	}
	c := d.cfg.DDP
	c.Clip = d.Clip(round)
	return c.Params(d.cfg.Dim)
}

// Params are the derived round parameters (γ, sensitivities, share noise).
func (d *DistributedDP) Params() privacy.DDPParams { return d.params }

func (d *DistributedDP) expected() float64 { return d.cfg.SamplingRate * float64(d.cfg.Clients) }

// Describe states the mechanism for the run report.
func (d *DistributedDP) Describe() string {
	p := d.params
	return fmt.Sprintf("distributed DP (%s), noise multiplier z = %g, clip S = %g: each client adds its share of integer noise "+
		"to its rotated update, quantised with step γ = %.4g and conditionally rounded to L2 ≤ Δ2 = %.6g (L1 ≤ %.6g), in Z_2^%d, "+
		"before masking — the server never sees an un-noised sum; noise split in %d shares (each of parameter %.6g), rounds with fewer "+
		"survivors abandoned; summed noise σ ≥ z·Δ2·γ = %.4g per coordinate; Poisson q = %g, δ = %g, rdp accountant (integer orders, "+
		"Zhu–Wang subsampling), each round accounted with the shares actually summed",
		p.Mechanism, p.NoiseMultiplier, p.Clip, p.Gamma, p.L2, p.L1, p.Bits, p.MinClients, p.ShareParam,
		p.SumStd(p.MinClients), d.cfg.SamplingRate, d.cfg.Delta) + d.describeAdaptive()
}

func (d *DistributedDP) describeAdaptive() string {
	if d.cfg.Adaptive == nil {
		return ""
	}
	a := d.cfg.Adaptive.Config()
	return fmt.Sprintf("; adaptive clipping toward the %g quantile of update norms from S = %g (Andrew et al. 2021): each client adds "+
		"its ±1 clipped indicator and a share of the count noise (σ = %g in the count of unclipped clients) inside the secure sum, "+
		"so the server sees only the noised count; the count is accounted with the update (RDP of both)",
		a.TargetQuantile, a.InitialClip, a.CountStddev)
}

func (d *DistributedDP) event(p privacy.DDPParams, shares int) privacy.Event {
	return privacy.DiscreteStep(p.Event(shares), d.cfg.SamplingRate, 1)
}

// CheckBudget refuses a round whose accounting would pass MaxEpsilon, assuming the least noise
// a released round can hold (MinClients shares).
func (d *DistributedDP) CheckBudget(round int) error {
	if d.cfg.MaxEpsilon == 0 {
		return nil
	}
	p, err := d.roundParams(round)
	if err != nil {
		return err
	}
	r, err := d.cfg.Accountant.EpsilonAfterEvent(d.event(p, p.MinClients), d.cfg.Delta)
	if err != nil {
		return err
	}
	if r.Epsilon > d.cfg.MaxEpsilon {
		return fmt.Errorf("%w: round %d would bring ε to %.4g > %g", ErrBudgetExhausted, round, r.Epsilon, d.cfg.MaxEpsilon)
	}
	return nil
}

// ConfigureFit tells clients the clip norm and unit weights (the noise is their secure-sum
// half's, from the announced spec).
func (d *DistributedDP) ConfigureFit(round int, cfg FitConfig) FitConfig {
	d.mu.Lock()
	clip := d.currentClip()
	d.clips[round] = clip
	d.mu.Unlock()
	cfg.ClipNorm = float32(clip)
	cfg.UnitWeights = true
	return cfg
}

// Finalize divides the noised sum by the expected cohort size (fixed denominator) and records
// how many shares it holds. The secure sum abandons rounds below MinClients; a sum that still
// arrives with fewer is an error, never released.
func (d *DistributedDP) Finalize(round int, sum []float64, count int, unclipped float64) ([]float32, error) {
	if count < d.params.MinClients {
		return nil, fmt.Errorf("round %d: a sum of %d noise shares, fewer than the %d the noise is split into: refusing to release it", round, count, d.params.MinClients)
	}
	if len(sum) != d.params.Dim {
		return nil, fmt.Errorf("round %d: a sum of %d entries, the mechanism was sized for %d", round, len(sum), d.params.Dim)
	}
	d.shares[round] = count
	inv := 1 / d.expected()
	mean := make([]float32, len(sum))
	for j, v := range sum {
		mean[j] = float32(v * inv)
	}
	if d.cfg.Adaptive != nil {
		// unclipped is the secure sum's noised count + count/2: the noise is the clients'. Nothing
		// checks a client's count slot (it is masked), so one malicious client can put any ring
		// value there; the count is clamped to what the survivors can honestly add up to, so one
		// round moves the clip no further than all-clipped or all-unclipped honest clients would
		// (post-processing: no privacy cost).
		half := max(float64(count), d.cfg.Adaptive.Config().ExpectedClients) / 2
		if _, _, err := d.cfg.Adaptive.UpdateNoised(min(max(unclipped-float64(count)/2, -half), half)); err != nil {
			return nil, fmt.Errorf("round %d adaptive clipping: %w", round, err)
		}
	}
	return mean, nil
}

// Account composes the round: with the shares its released sum held, or, for a round that
// released nothing, conservatively as if it had released MinClients shares.
func (d *DistributedDP) Account(round int) (float64, float64, error) {
	p, err := d.roundParams(round)
	if err != nil {
		return 0, 0, err
	}
	n, ok := d.shares[round]
	if !ok {
		n = p.MinClients
	}
	delete(d.shares, round)
	d.mu.Lock()
	delete(d.clips, round)
	d.mu.Unlock()
	if err := d.cfg.Accountant.ComposeEvent(d.event(p, n)); err != nil {
		return 0, 0, err
	}
	eps, err := d.cfg.Accountant.Epsilon(d.cfg.Delta)
	return eps, d.cfg.Delta, err
}

// SaveState saves the accountant's history.
func (d *DistributedDP) SaveState() ([]byte, error) {
	a, err := d.cfg.Accountant.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("save accountant: %w", err)
	}
	st := dpState{Accountant: a}
	if d.cfg.Adaptive != nil {
		if st.Adaptive, err = d.cfg.Adaptive.MarshalJSON(); err != nil {
			return nil, fmt.Errorf("save adaptive clip: %w", err)
		}
	}
	return json.Marshal(st)
}

// RestoreState continues from a state saved by SaveState.
func (d *DistributedDP) RestoreState(b []byte) error {
	var st dpState
	if err := json.Unmarshal(b, &st); err != nil || len(st.Accountant) == 0 {
		return errors.New("privacy state: not a saved DP state")
	}
	acct, err := privacy.RestoreAccountant(st.Accountant)
	if err != nil {
		return err
	}
	r, ok := acct.(*privacy.RDPAccountant)
	if !ok {
		return fmt.Errorf("privacy state: saved by a %s accountant, distributed DP uses rdp", acct.Kind())
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
	d.cfg.Accountant = r
	return nil
}
