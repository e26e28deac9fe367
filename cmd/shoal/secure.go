package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"shoal/fl"
	"shoal/privacy"
	"shoal/securesum"
)

// secOptions are the privacy flags of simulate and server: secure sum and DP.
type secOptions struct {
	SecureSum       string
	SecAggBits      int
	SecAggClipRange float64
	MaxDropout      float64
	MaxCorrupt      float64
	SecAggDegree    int
	AllowWeakDegree bool
	StageDropout    float64
	DropoutStage    string
	StageTimeout    time.Duration
	HECommittee     int
	HEThreshold     int

	DP              string
	Clip            float64
	AdaptiveClip    float64
	PerLayerClip    bool
	NoiseMultiplier float64
	Delta           float64
	Accountant      string
	MaxEpsilon      float64

	// Distributed DP (--dp distributed).
	Mechanism     string
	DDPMinClients int
	DDPCohort     float64
	ModClipProb   float64
}

func (s *secOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&s.SecureSum, "secure-sum", "none", "secure aggregation: none, secagg (Bonawitz et al. 2017), secaggplus (Bell et al. 2020), he (threshold CKKS)")
	fs.IntVar(&s.HECommittee, "he-committee", 5, "HE: decryption committee size K (clients 0..K−1)")
	fs.IntVar(&s.HEThreshold, "he-threshold", 3, "HE: committee members T needed to decrypt the aggregate")
	fs.IntVar(&s.SecAggBits, "secagg-bits", 16, "SecAgg: quantisation bits per entry")
	fs.Float64Var(&s.SecAggClipRange, "secagg-clip-range", 0.5, "SecAgg: entries of the (weight-scaled) update are clipped to ±this")
	fs.Float64Var(&s.MaxDropout, "max-dropout", 0.1, "SecAgg: fraction of the cohort that may drop out mid-protocol (chooses degree and threshold)")
	fs.Float64Var(&s.MaxCorrupt, "max-corrupt", 0.1, "SecAgg: fraction of clients that may collude with the server")
	fs.IntVar(&s.SecAggDegree, "secagg-degree", 0, "SecAgg+: force the graph degree (0: planned); refused when it misses the --max-dropout/--max-corrupt bounds")
	fs.BoolVar(&s.AllowWeakDegree, "secagg-allow-weak-degree", false, "SecAgg+: keep a forced degree that misses the bounds; the run then claims no statistical security (the summary says so)")
	fs.Float64Var(&s.StageDropout, "stage-dropout", 0, "probability that a client in the secure-sum protocol drops at --dropout-stage")
	fs.StringVar(&s.DropoutStage, "dropout-stage", "", "protocol stage of --stage-dropout (secagg: advertise, share, masked (default), unmask; he: upload (default), ping, decrypt)")
	fs.DurationVar(&s.StageTimeout, "stage-timeout", 0, "deadline of each secure-sum stage (0: none)")

	fs.StringVar(&s.DP, "dp", "off", "differential privacy: off, central (server noises the sum), local (each client noises its update) "+
		"or distributed (each client adds a share of integer noise inside the secure sum; needs --secure-sum secagg|secaggplus)")
	fs.StringVar(&s.Mechanism, "mechanism", privacy.MechanismSkellam, "--dp distributed: noise shares, skellam (Agarwal et al. 2021) or ddgauss (distributed discrete Gaussian, Kairouz et al. 2021)")
	fs.IntVar(&s.DDPMinClients, "ddp-min-clients", 0, "--dp distributed: the noise is split in this many shares and rounds with fewer survivors are abandoned "+
		"(0: (1 − --max-dropout)·(n̄ − 2√n̄) for the expected cohort n̄)")
	fs.Float64Var(&s.DDPCohort, "ddp-cohort", 0, "--dp distributed: cohort size the quantisation step γ is sized for (0: the expected cohort q·N)")
	fs.Float64Var(&s.ModClipProb, "modclip-prob", privacy.DefaultModClipProb, "--dp distributed: probability that a coordinate of the sum wraps around Z_2^b")
	fs.Float64Var(&s.Clip, "clip", 0.5, "DP: L2 clip norm S of each client's update (the initial S with --adaptive-clip)")
	fs.Float64Var(&s.AdaptiveClip, "adaptive-clip", 0, "DP: target quantile of update norms for adaptive clipping (Andrew et al. 2021; 0: fixed clip)")
	fs.BoolVar(&s.PerLayerClip, "per-layer-clip", false, "DP: clip each layer to its share of S (S² split in proportion to layer sizes)")
	fs.Float64Var(&s.NoiseMultiplier, "noise-multiplier", 1.0, "DP: noise standard deviation z in units of S")
	fs.Float64Var(&s.Delta, "delta", 1e-5, "DP: δ of the reported (ε, δ)")
	fs.StringVar(&s.Accountant, "accountant", "rdp", "DP accountant: rdp (Rényi DP) or pld (privacy loss distribution)")
	fs.Float64Var(&s.MaxEpsilon, "max-epsilon", 0, "DP: stop before a round that would spend more than this ε (0: no limit)")
}

// buildPrivacy returns the DP mechanism (nil when --dp off) for a population of clients. DP
// accounting assumes Poisson sampling, so any other sampling is refused rather than reported
// with a wrong ε. seed, when non-zero, makes the noise reproducible (--seed). sensitivity maps
// the clip to the largest contribution the secure sum can carry (its quantisation rounding).
func buildPrivacy(s secOptions, sampling string, q float64, clients int, seed uint64, dim int, sensitivity func(float64) float64) (fl.ServerPrivacy, error) {
	switch s.DP {
	case "off", "":
		if s.MaxEpsilon != 0 || s.AdaptiveClip != 0 {
			return nil, usageErrorf("--max-epsilon and --adaptive-clip need --dp central, local or distributed")
		}
		return nil, nil
	case fl.PlacementCentral, fl.PlacementLocal, fl.PlacementDistributed:
	default:
		return nil, usageErrorf("unknown --dp %q (valid: off, central, local, distributed)", s.DP)
	}
	if sampling != "poisson" {
		return nil, usageErrorf("--dp %s needs --sampling poisson: the accountant's privacy amplification assumes each client "+
			"is included independently with probability q (--fraction); fixed-size sampling would make the reported ε wrong", s.DP)
	}
	if s.DP == fl.PlacementDistributed {
		return buildDistributed(s, q, clients, dim)
	}
	acct, err := privacy.NewAccountant(s.Accountant)
	if err != nil {
		return nil, usageErrorf("--accountant: %v", err)
	}
	cfg := fl.DPConfig{Placement: s.DP, NoiseMultiplier: s.NoiseMultiplier, Clip: s.Clip, PerLayer: s.PerLayerClip,
		SamplingRate: q, Clients: clients, Delta: s.Delta, MaxEpsilon: s.MaxEpsilon, Accountant: acct, Sensitivity: sensitivity}
	if seed != 0 {
		cfg.NoiseSeed = seed ^ 0xd9 | 1
	} else if cfg.Source, err = privacy.NewSource(); err != nil {
		return nil, err
	}
	if s.AdaptiveClip != 0 {
		// Toward the --adaptive-clip quantile with the reference implementation's defaults,
		// starting from --clip, for the expected cohort size.
		ac := privacy.DefaultAdaptiveClipConfig(q * float64(clients))
		ac.TargetQuantile, ac.InitialClip = s.AdaptiveClip, s.Clip
		if cfg.Adaptive, err = privacy.NewAdaptiveClipper(ac); err != nil {
			return nil, usageErrorf("--adaptive-clip: %v", err)
		}
	}
	d, err := fl.NewDPFedAvg(cfg)
	if err != nil {
		return nil, usageErrorf("--dp: %v", err)
	}
	return d, nil
}

// buildDistributed is the server half of distributed DP; the clients' half is the secure sum's
// (secureSpec carries the same configuration to them).
func buildDistributed(s secOptions, q float64, clients, dim int) (fl.ServerPrivacy, error) {
	if s.PerLayerClip {
		return nil, usageErrorf("--per-layer-clip is not supported with --dp distributed (the rotation mixes the layers)")
	}
	if s.Accountant != "rdp" {
		return nil, usageErrorf("--dp distributed is accounted by the rdp accountant only (--accountant rdp)")
	}
	s = s.withDDPDefaults(q * float64(clients))
	ddp, err := s.ddpConfig()
	if err != nil {
		return nil, err
	}
	cfg := fl.DistributedDPConfig{DDP: *ddp, Dim: dim, SamplingRate: q, Clients: clients, Delta: s.Delta,
		MaxEpsilon: s.MaxEpsilon, Accountant: privacy.NewRDPAccountant(privacy.ConversionImproved)}
	if s.AdaptiveClip != 0 {
		// As central DP's, with the count noised by the clients' shares inside the secure sum.
		ac := privacy.DefaultAdaptiveClipConfig(q * float64(clients))
		ac.TargetQuantile, ac.InitialClip, ac.CountStddev = s.AdaptiveClip, s.Clip, ddp.CountStddev
		if cfg.Adaptive, err = privacy.NewAdaptiveClipper(ac); err != nil {
			return nil, usageErrorf("--adaptive-clip: %v", err)
		}
	}
	d, err := fl.NewDistributedDP(cfg)
	if err != nil {
		return nil, usageErrorf("--dp distributed: %v", err)
	}
	return d, nil
}

// withDDPDefaults fills in distributed DP's cohort and minimum of shares from the expected
// cohort n̄: γ is sized for n̄, and the noise split in (1 − max dropout)·(n̄ − 2√n̄) shares (the
// Poisson cohort falls below n̄ − 2√n̄ with probability about 2%; such rounds are abandoned).
func (s secOptions) withDDPDefaults(expected float64) secOptions {
	if s.DP != fl.PlacementDistributed {
		return s
	}
	if s.DDPCohort == 0 {
		s.DDPCohort = expected
	}
	if s.DDPMinClients == 0 {
		s.DDPMinClients = max(2, int(math.Floor((1-s.MaxDropout)*(expected-2*math.Sqrt(expected)))))
	}
	return s
}

// ddpCountStddev is the noise of adaptive clipping's count under distributed DP: the reference
// implementation's σ_b = 0.05·n̄ (0 without --adaptive-clip).
func (s secOptions) ddpCountStddev() float64 {
	if s.AdaptiveClip == 0 {
		return 0
	}
	return 0.05 * s.DDPCohort
}

// linkDDPClip makes the secure sum announce each round's adaptive clip under distributed DP.
func linkDDPClip(e *fl.Engine) {
	d, ok := e.Privacy.(*fl.DistributedDP)
	if sa, isSecAgg := e.SecureSum.(*securesum.SecAgg); ok && isSecAgg {
		sa.SetDDPClip(d.Clip)
	}
}

// ddpConfig is distributed DP's configuration (nil without --dp distributed).
func (s secOptions) ddpConfig() (*privacy.DDPConfig, error) {
	if s.DP != fl.PlacementDistributed {
		return nil, nil
	}
	switch s.SecureSum {
	case "secagg", "secaggplus":
	case "he":
		return nil, usageErrorf("--dp distributed needs --secure-sum secagg or secaggplus: threshold CKKS sums approximate reals, " +
			"and its decryption noise is not an integer mechanism the accountant can bound (see docs/privacy.md)")
	default:
		return nil, usageErrorf("--dp distributed needs --secure-sum secagg or secaggplus: without a secure sum the server sees each noise share")
	}
	if s.Mechanism != privacy.MechanismSkellam && s.Mechanism != privacy.MechanismDDGauss {
		return nil, usageErrorf("--mechanism must be skellam or ddgauss, got %q", s.Mechanism)
	}
	c := privacy.DDPConfig{Mechanism: s.Mechanism, Bits: s.SecAggBits, Clip: s.Clip, NoiseMultiplier: s.NoiseMultiplier,
		MinClients: s.DDPMinClients, Cohort: s.DDPCohort, ModClipProb: s.ModClipProb, CountStddev: s.ddpCountStddev()}.WithDefaults()
	if err := c.Validate(); err != nil {
		return nil, usageErrorf("--dp distributed: %v", err)
	}
	return &c, nil
}

// secureSpec is the run's secure-sum configuration as the server announces it. Under --dp
// distributed it carries the mechanism (a spec without its cohort and minimum of shares, when
// withDDPDefaults was not applied, fails to build rather than run without noise).
func (s secOptions) secureSpec() securesum.Spec {
	spec := securesum.Spec{Bits: s.SecAggBits, ClipRange: s.SecAggClipRange, MaxDropout: s.MaxDropout, MaxCorrupt: s.MaxCorrupt,
		Degree: s.SecAggDegree, AllowWeakDegree: s.AllowWeakDegree, Committee: s.HECommittee, Threshold: s.HEThreshold}
	if s.DP == fl.PlacementDistributed {
		spec.DDP = &privacy.DDPConfig{Mechanism: s.Mechanism, Bits: s.SecAggBits, Clip: s.Clip, NoiseMultiplier: s.NoiseMultiplier,
			MinClients: s.DDPMinClients, Cohort: s.DDPCohort, ModClipProb: s.ModClipProb, CountStddev: s.ddpCountStddev()}
	}
	return spec
}

// buildSecureSum returns the configured protocol (nil for none) and the index of the dropout
// stage. seed, when non-zero, makes the protocol's randomness reproducible (simulation only).
// expected is the expected cohort, against which a forced SecAgg+ degree is checked up front.
func buildSecureSum(s secOptions, clients int, expected float64, seed uint64) (fl.SecureSum, int, error) {
	s = s.withDDPDefaults(expected)
	if _, err := s.ddpConfig(); err != nil {
		return nil, 0, err
	}
	if s.SecureSum == "none" || s.SecureSum == "" {
		if s.StageDropout > 0 {
			return nil, 0, usageErrorf("--stage-dropout needs a --secure-sum protocol")
		}
		return nil, 0, nil
	}
	if s.SecureSum == "he" && s.HECommittee > clients {
		return nil, 0, usageErrorf("--he-committee %d is larger than the federation (%d clients)", s.HECommittee, clients)
	}
	spec := s.secureSpec()
	if seed != 0 {
		spec.Rand = seededReaders(seed)
	}
	proto, err := securesum.New(s.SecureSum, spec)
	if err != nil {
		return nil, 0, usageErrorf("--secure-sum: %v (valid: none, %s)", err, strings.Join(securesum.Names(), ", "))
	}
	if s.DropoutStage == "" {
		s.DropoutStage = "masked" // SecAgg: after sharing keys, before the masked input
		if proto.Name() == "he" {
			s.DropoutStage = "upload"
		}
	}
	stage := slices.Index(proto.Stages(), s.DropoutStage)
	if stage < 0 {
		return nil, 0, usageErrorf("--dropout-stage %q: %s has stages %s", s.DropoutStage, proto.Name(), strings.Join(proto.Stages(), ", "))
	}
	if s.StageDropout < 0 || s.StageDropout >= 1 {
		return nil, 0, usageErrorf("--stage-dropout must be in [0, 1), got %v", s.StageDropout)
	}
	if sa, ok := proto.(*securesum.SecAgg); ok && s.SecAggDegree > 0 {
		// Refused now rather than in the first round: the run would otherwise claim a security
		// its graph does not have.
		if _, _, _, err := sa.Plan(max(2, int(math.Round(expected)))); err != nil {
			return nil, 0, usageErrorf("--secagg-degree %d: %v", s.SecAggDegree, err)
		}
	}
	return proto, stage, nil
}

// seededReaders gives each (round, party) its own reproducible ChaCha8 stream.
func seededReaders(seed uint64) func(int, fl.ClientID) io.Reader {
	return func(round int, id fl.ClientID) io.Reader {
		var key [32]byte
		for i, v := range []uint64{seed, uint64(round), uint64(int64(id)), 0x5ecA99} {
			for b := range 8 {
				key[8*i+b] = byte(v >> (8 * b))
			}
		}
		return rand.NewChaCha8(key)
	}
}

// protection lists, for the run summary, what protects the clients' updates: the secure-sum
// protocol and the DP mechanism, each with its parameters and threat model, and where the
// randomness that protects them came from.
func protection(e *fl.Engine, o simOptions) []string {
	out := []string{"no secure aggregation: the server sees every client's update"}
	if e.SecureSum != nil {
		out[0] = e.SecureSum.Describe()
	}
	if e.Privacy != nil {
		out = append(out, e.Privacy.Describe())
	} else {
		out = append(out, "no differential privacy: the released models carry no (ε, δ) guarantee")
	}
	switch {
	case o.privacySeed() != 0 && (e.SecureSum != nil || e.Privacy != nil):
		out = append(out, fmt.Sprintf("seeded: reproducible experiment, not private — the cohorts, the DP noise and "+
			"the secure-sum randomness all follow from the reported seed %d", o.Seed))
	case e.Privacy != nil:
		out = append(out, "cohorts and DP noise come from the OS CSPRNG and are not reproducible from the report; "+
			"the reported seed determines only the initial model and data shuffles")
	}
	return out
}

// describeSecurity is the one-line threat model of a run for the progress header.
func describeSecurity(e *fl.Engine) string {
	s := "no secure aggregation (the server sees every update)"
	if e.SecureSum != nil {
		s = fmt.Sprintf("secure sum %s", e.SecureSum.Name())
	}
	if e.Privacy != nil {
		s += "; " + e.Privacy.Describe()
	}
	return s
}
