package fl

import (
	"encoding/json"
	"errors"
	"fmt"

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
}

// DistributedDP is the server half of distributed DP: it sets the clients' clip and unit
// weights, turns the (already noised) secure sum into the fixed-denominator mean, and accounts
// each round with the number of noise shares actually in its sum. It implements ServerPrivacy.
type DistributedDP struct {
	cfg    DistributedDPConfig
	params privacy.DDPParams
	// shares[round] is the number of noise shares in the round's released sum.
	shares map[int]int
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
	return &DistributedDP{cfg: cfg, params: p, shares: map[int]int{}}, nil
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
		p.SumStd(p.MinClients), d.cfg.SamplingRate, d.cfg.Delta)
}

func (d *DistributedDP) event(shares int) privacy.Event {
	return privacy.DiscreteStep(d.params.Event(shares), d.cfg.SamplingRate, 1)
}

// CheckBudget refuses a round whose accounting would pass MaxEpsilon, assuming the least noise
// a released round can hold (MinClients shares).
func (d *DistributedDP) CheckBudget(round int) error {
	if d.cfg.MaxEpsilon == 0 {
		return nil
	}
	r, err := d.cfg.Accountant.EpsilonAfterEvent(d.event(d.params.MinClients), d.cfg.Delta)
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
func (d *DistributedDP) ConfigureFit(_ int, cfg FitConfig) FitConfig {
	cfg.ClipNorm = float32(d.params.Clip)
	cfg.UnitWeights = true
	return cfg
}

// Finalize divides the noised sum by the expected cohort size (fixed denominator) and records
// how many shares it holds. The secure sum abandons rounds below MinClients; a sum that still
// arrives with fewer is an error, never released.
func (d *DistributedDP) Finalize(round int, sum []float64, count int, _ float64) ([]float32, error) {
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
	return mean, nil
}

// Account composes the round: with the shares its released sum held, or, for a round that
// released nothing, conservatively as if it had released MinClients shares.
func (d *DistributedDP) Account(round int) (float64, float64, error) {
	n, ok := d.shares[round]
	if !ok {
		n = d.params.MinClients
	}
	delete(d.shares, round)
	if err := d.cfg.Accountant.ComposeEvent(d.event(n)); err != nil {
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
	return json.Marshal(dpState{Accountant: a})
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
	d.cfg.Accountant = r
	return nil
}
