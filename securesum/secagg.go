package securesum

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"

	"shoal/fl"
	"shoal/privacy"
	"shoal/secagg"
)

// SecAggOptions configures SecAgg (complete graph) or SecAgg+ (random Harary graph).
type SecAggOptions struct {
	Plus       bool    // SecAgg+: sparse random graph; otherwise the complete graph
	Bits       int     // quantisation bits per entry (default 16)
	ClipRange  float64 // entries are clipped to [−ClipRange, ClipRange] (default 0.5)
	MaxDropout float64 // tolerated dropout fraction, chooses degree and threshold (default 0.1)
	MaxCorrupt float64 // tolerated fraction of clients colluding with the server (default 0.1)
	// Degree forces the graph degree (0: planned from the fractions). A forced degree is held to
	// the checks PlanGraph makes (secagg.AssessGraph) in every round and refused when it does not
	// meet them, unless AllowWeakDegree is set.
	Degree int
	// AllowWeakDegree keeps a forced Degree that fails the dropout or corruption bounds. The run
	// then claims no statistical security: Describe says so and reports, for the weakest round
	// planned so far, the probability that a client has enough corrupt neighbours to be exposed.
	AllowWeakDegree bool
	// RunID identifies the run; it is bound into every signature and derived key of the
	// protocol, so no transcript of one run can be replayed in another. Zero at the server: it
	// draws 16 random bytes (from Rand(0, −1) when Rand is set) once. At a client, a non-zero
	// RunID (the one the server announced) makes it refuse a setup message of any other run.
	RunID [16]byte
	// Rand returns the randomness of client id (or of the server, id −1) in a round; nil means
	// crypto/rand, the only choice for a real run.
	Rand func(round int, id fl.ClientID) io.Reader
	// DDP, if set, makes the adapter carry distributed DP (see Spec.DDP): clients noise their
	// own quantised update, and the server only ever unmasks a noised sum. Bits must be DDP.Bits.
	DDP *privacy.DDPConfig
}

// DDPPolicy is a client's own floor on the distributed-DP noise of the rounds it takes part in:
// never taken from the server.
type DDPPolicy struct {
	// MinNoiseMultiplier: the summed noise must be at least z·Δ2 for this z.
	MinNoiseMultiplier float64
	// MaxShares: the server may split the noise among at most this many shares (its
	// MinClients), so that this client's own share is at least 1/MaxShares of it (0: any).
	MaxShares int
}

// SecAgg is the fl.SecureSum of Bonawitz et al. 2017 and of SecAgg+ (Bell et al. 2020), for a
// semi-honest server: the server learns only the sum of the survivors' quantised updates.
//
// Aggregation weights are at least 1 (the engine's weights are example counts ≥ 1, or 1 under
// unit weights) and at most the round's announced maximum; with that, the server knows the
// range every honest sum lies in, and abandons a round whose unmasked sum is outside it (a
// client can shift the sum by any constant, masks cancel whatever it sends).
type SecAgg struct {
	o SecAggOptions

	// Client-side floors (Local): a client refuses to mask its update in a round among fewer
	// than minCohort clients or with a Shamir threshold below minThreshold.
	minCohort, minThreshold int
	ddpPolicy               *DDPPolicy

	// ddpClip gives the clip of a round under distributed DP with adaptive clipping (SetDDPClip).
	ddpClip func(round int) float64

	mu    sync.Mutex
	runID [16]byte          // the server's run id, drawn once
	drawn bool              // runID is set
	weak  *secagg.GraphRisk // weakest forced-degree round planned so far (AllowWeakDegree)
}

// NewSecAgg validates the options and fills in defaults.
func NewSecAgg(o SecAggOptions) (*SecAgg, error) {
	if o.Bits == 0 {
		o.Bits = 16
	}
	if o.ClipRange == 0 {
		o.ClipRange = 0.5
	}
	switch {
	case o.Bits < 2 || o.Bits > 24:
		return nil, fmt.Errorf("secagg: bits must be in [2, 24], got %d", o.Bits)
	case !(o.ClipRange > 0) || math.IsInf(o.ClipRange, 0):
		return nil, fmt.Errorf("secagg: clip range must be finite and > 0, got %v", o.ClipRange)
	case !(o.MaxDropout >= 0 && o.MaxDropout < 1) || !(o.MaxCorrupt >= 0 && o.MaxCorrupt < 1):
		return nil, fmt.Errorf("secagg: dropout and corruption fractions must be in [0, 1), got %v and %v", o.MaxDropout, o.MaxCorrupt)
	case o.Degree < 0:
		return nil, fmt.Errorf("secagg: degree must be ≥ 0, got %d", o.Degree)
	}
	if o.DDP != nil {
		c := o.DDP.WithDefaults()
		if err := c.Validate(); err != nil {
			return nil, fmt.Errorf("secagg: %w", err)
		}
		if c.Bits != o.Bits {
			return nil, fmt.Errorf("secagg: distributed DP sums in Z_2^%d, the protocol quantises to %d bits", c.Bits, o.Bits)
		}
		if c.MinClients < 2 {
			return nil, fmt.Errorf("secagg: distributed DP needs at least 2 noise shares, got %d", c.MinClients)
		}
		o.DDP = &c
	}
	return &SecAgg{o: o}, nil
}

func (s *SecAgg) Name() string {
	if s.o.Plus {
		return "secaggplus"
	}
	return "secagg"
}

func (s *SecAgg) Describe() string {
	graph := "complete graph (Bonawitz et al. 2017)"
	claim := fmt.Sprintf("tolerates %.0f%% dropout and %.0f%% of clients colluding with the server", 100*s.o.MaxDropout, 100*s.o.MaxCorrupt)
	if s.o.Plus {
		graph = fmt.Sprintf("random Harary graph (SecAgg+, Bell et al. 2020), %d-bit statistical security", secagg.StatisticalSecurity)
	}
	switch {
	case s.o.Degree > 0 && s.o.AllowWeakDegree:
		kind := "complete graph"
		if s.o.Plus {
			kind = "random Harary graph (SecAgg+)"
		}
		graph = fmt.Sprintf("%s of forced degree %d, kept even in rounds where it fails the dropout and corruption bounds "+
			"(allow weak degree): NO statistical-security claim", kind, s.o.Degree)
		s.mu.Lock()
		weak := s.weak
		s.mu.Unlock()
		if weak != nil {
			graph += "; weakest round so far: " + describeRisk(*weak, s.o.MaxCorrupt)
		} else {
			graph += "; no round has fallen short of the bounds so far"
		}
		claim = fmt.Sprintf("sized for %.0f%% dropout; %.0f%% of clients colluding with the server may expose others' inputs", 100*s.o.MaxDropout, 100*s.o.MaxCorrupt)
	case s.o.Degree > 0 && s.o.Plus:
		graph = fmt.Sprintf("random Harary graph (SecAgg+, Bell et al. 2020) of forced degree %d, checked every round: %d-bit statistical security",
			s.o.Degree, secagg.StatisticalSecurity)
	}
	if d := s.o.DDP; d != nil {
		return fmt.Sprintf("%s: %s; semi-honest server learns only the sum; %s; distributed DP: each client adds its %s noise share "+
			"(1/%d of the noise) to its rotated, %d-bit conditionally rounded update before masking, so the server never sees an un-noised sum; "+
			"rounds with fewer than %d survivors are abandoned; sums outside the ring's range are refused, in-range inputs are not validated",
			s.Name(), graph, claim, d.Mechanism, d.MinClients, d.Bits, d.MinClients)
	}
	return fmt.Sprintf("%s: %s; semi-honest server learns only the sum; %s; "+
		"%d-bit conditional stochastic quantisation of entries clipped to ±%g, summed in Z_2^(b+⌈log2 n⌉); "+
		"sums outside the range of honest inputs are refused, in-range inputs are not validated",
		s.Name(), graph, claim, s.o.Bits, s.o.ClipRange)
}

// describeRisk states what a weak graph loses, in the words of the run summary.
func describeRisk(r secagg.GraphRisk, maxCorrupt float64) string {
	exposedAt := r.Threshold
	return fmt.Sprintf("%d clients, degree %d, threshold %d: a client has at least %d of its neighbours among %d corrupt clients "+
		"(%.0f%% colluding with the server), which then unmask its input, with probability %.3g (about %.0f clients per round); "+
		"it is isolated among corrupt or dropped neighbours with probability %.3g",
		r.Clients, r.Degree, r.Threshold, exposedAt, r.Corrupt, 100*maxCorrupt, r.Exposed, r.Exposed*float64(r.Clients), r.Isolated)
}

// SetDDPClip makes the server take each round's clip from clip (the adaptive clipper's, under
// distributed DP with CountStddev > 0) and announce it in the round's setup.
func (s *SecAgg) SetDDPClip(clip func(round int) float64) { s.ddpClip = clip }

// roundDDP is the round's distributed-DP configuration: the announced one, with the round's
// clip under adaptive clipping.
func (s *SecAgg) roundDDP(round int) privacy.DDPConfig {
	c := *s.o.DDP
	if c.CountStddev > 0 && s.ddpClip != nil {
		c.Clip = s.ddpClip(round)
	}
	return c
}

// Sensitivity is the largest L2 norm one client's contribution to the sum can have when its
// update is clipped to clip and weighted 1 (the engine's unit weights under DP, where maxWeight
// is 1 and nothing is scaled): conditional rounding (secagg.NormBound) keeps the dequantised
// update within B(clip) = √(clip² + O(γ²·dim + γ·clip)) of the origin, γ = 2·ClipRange/(2^Bits−1).
//
// Under distributed DP it is B(clip) of the rotated, padded vector, γ·Δ2 (the noise is the
// clients', calibrated to it; central noise must not be added on top).
func (s *SecAgg) Sensitivity(clip float64, dim int) float64 {
	if s.o.DDP != nil {
		c := *s.o.DDP
		c.Clip = clip
		if p, err := c.Params(dim); err == nil {
			return p.L2 * p.Gamma
		}
		return math.Inf(1)
	}
	cfg := secagg.Config{Dim: max(dim, 1) + 1, NormDim: max(dim, 1), Bits: s.o.Bits, ClipRange: s.o.ClipRange}
	return secagg.NormBound(&cfg, clip)
}

// Stages are the exchanges of one round: the setup message answered by AdvertiseKeys, the key
// list answered by ShareKeys, the shares answered by the masked input, and the survivor list
// answered by the unmasking shares.
func (s *SecAgg) Stages() []string { return []string{"advertise", "share", "masked", "unmask"} }

func (s *SecAgg) rand(round int, id fl.ClientID) io.Reader {
	if s.o.Rand == nil {
		return rand.Reader
	}
	return s.o.Rand(round, id)
}

// Plan returns the degree and threshold a round of n clients uses and what they guarantee. A
// forced degree that fails the dropout or corruption bounds is refused (with an error saying by
// how much) unless AllowWeakDegree is set; the engine's command line can call Plan with the
// expected cohort size to refuse a run before it starts.
func (s *SecAgg) Plan(n int) (degree, threshold int, risk secagg.GraphRisk, err error) {
	kind := secagg.GraphComplete
	if s.o.Plus {
		kind = secagg.GraphHarary
	}
	if s.o.Degree == 0 {
		if degree, threshold, err = secagg.PlanGraph(n, s.o.MaxDropout, s.o.MaxCorrupt, kind, false); err != nil {
			return 0, 0, risk, err
		}
		risk, err = secagg.AssessGraph(n, degree, threshold, s.o.MaxDropout, s.o.MaxCorrupt, kind, false)
		return degree, threshold, risk, err
	}
	if n < 2 || n > secagg.MaxClients {
		return 0, 0, risk, fmt.Errorf("secagg: %d clients out of range [2, %d]", n, secagg.MaxClients)
	}
	degree = min(s.o.Degree, n-1)
	if threshold, err = secagg.PlanThreshold(n, degree, s.o.MaxDropout, kind); err != nil {
		return 0, 0, risk, fmt.Errorf("secagg: forced degree %d: %w", degree, err)
	}
	if risk, err = secagg.AssessGraph(n, degree, threshold, s.o.MaxDropout, s.o.MaxCorrupt, kind, false); err != nil {
		return 0, 0, risk, err
	}
	if !risk.Secure() {
		if !s.o.AllowWeakDegree {
			hint := "plan the degree instead (degree 0)"
			if k, _, err := secagg.PlanGraph(n, s.o.MaxDropout, s.o.MaxCorrupt, kind, false); err == nil {
				hint = fmt.Sprintf("the smallest degree that meets them is %d (degree 0 plans it)", k)
			}
			return 0, 0, risk, fmt.Errorf("secagg: forced degree %d does not meet the %d-bit bounds for %d clients with %.0f%% dropout and %.0f%% corrupt: "+
				"%s; %s, or accept the weaker guarantee explicitly (allow weak degree)",
				degree, secagg.StatisticalSecurity, n, 100*s.o.MaxDropout, 100*s.o.MaxCorrupt, describeRisk(risk, s.o.MaxCorrupt), hint)
		}
		s.mu.Lock()
		if s.weak == nil || risk.SecurityBits < s.weak.SecurityBits {
			s.weak = &risk
		}
		s.mu.Unlock()
	}
	return degree, threshold, risk, nil
}

// RunID returns the run id the server binds into every round (drawing it on first use).
func (s *SecAgg) RunID() ([16]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drawn {
		return s.runID, nil
	}
	s.runID = s.o.RunID
	if s.runID == ([16]byte{}) {
		if _, err := io.ReadFull(s.rand(0, -1), s.runID[:]); err != nil {
			return s.runID, fmt.Errorf("secagg run id: %w", err)
		}
	}
	s.drawn = true
	return s.runID, nil
}

// config plans the round's public parameters for n clients whose largest weight is maxWeight.
func (s *SecAgg) config(round, n, dim int, maxWeight float64) (secagg.Config, error) {
	degree, threshold, _, err := s.Plan(n)
	if err != nil {
		return secagg.Config{}, err
	}
	kind := secagg.GraphComplete
	if s.o.Plus && degree < n-1 {
		kind = secagg.GraphHarary
	}
	runID, err := s.RunID()
	if err != nil {
		return secagg.Config{}, err
	}
	ringDim, err := s.ringDim(dim)
	if err != nil {
		return secagg.Config{}, err
	}
	cfg := secagg.Config{Round: uint64(round), Clients: n, Dim: ringDim + 1, Bits: s.o.Bits, ClipRange: s.o.ClipRange,
		MaxWeight: maxWeight, Graph: kind, Degree: degree, Threshold: threshold, RunID: runID, NormDim: ringDim}
	if _, err := io.ReadFull(s.rand(round, -1), cfg.GraphSeed[:]); err != nil {
		return secagg.Config{}, fmt.Errorf("graph seed: %w", err)
	}
	return cfg, cfg.Validate()
}

// ringDim is the number of update entries in the ring: the model's dim, or under distributed DP
// its padding to a power of two (the rotated vector).
func (s *SecAgg) ringDim(dim int) (int, error) {
	if s.o.DDP == nil {
		return dim, nil
	}
	p, err := s.o.DDP.Params(dim)
	if err != nil {
		return 0, fmt.Errorf("secagg: %w", err)
	}
	return p.PaddedDim, nil
}

// NewServer starts the server's half for the clients holding inputs.
// Clients scale their update by weight/maxWeight before quantising, so the ring holds entries in
// the clip range whatever the weights; the server multiplies the sum back by maxWeight. Under unit
// weights (DP) maxWeight is 1 and nothing is scaled.
func (s *SecAgg) NewServer(round int, clients []fl.ClientID, dim int, maxWeight float64) (fl.SumServer, error) {
	if len(clients) < 2 {
		return nil, fmt.Errorf("%w: secure aggregation needs at least 2 clients, %d hold inputs", fl.ErrRoundAbandoned, len(clients))
	}
	if !(maxWeight > 0) || math.IsInf(maxWeight, 0) {
		return nil, fmt.Errorf("secagg: the largest client weight must be finite and > 0, got %v", maxWeight)
	}
	var ddp *privacy.DDPParams
	if s.o.DDP != nil {
		if len(clients) < s.o.DDP.MinClients {
			return nil, fmt.Errorf("%w: distributed DP round %d: %d clients hold inputs, fewer than the %d noise shares the noise is split into",
				fl.ErrRoundAbandoned, round, len(clients), s.o.DDP.MinClients)
		}
		if maxWeight != 1 {
			return nil, fmt.Errorf("secagg: distributed DP needs unit weights, the round's largest is %v", maxWeight)
		}
		p, err := s.roundDDP(round).Params(dim)
		if err != nil {
			return nil, fmt.Errorf("secagg round %d: %w", round, err)
		}
		ddp = &p
	}
	cfg, err := s.config(round, len(clients), dim, maxWeight)
	if err != nil {
		return nil, fmt.Errorf("%w: secagg round %d: %v", fl.ErrRoundAbandoned, round, err)
	}
	srv, err := secagg.NewServer(cfg)
	if err != nil {
		return nil, err
	}
	ids := slices.Clone(clients)
	slices.Sort(ids)
	index := make(map[fl.ClientID]uint32, len(ids))
	for i, id := range ids {
		index[id] = uint32(i)
	}
	return &secaggServer{s: s, cfg: cfg, srv: srv, ids: ids, index: index, dim: cfg.NormDim, ddp: ddp}, nil
}

type secaggServer struct {
	s       *SecAgg
	cfg     secagg.Config
	srv     *secagg.Server
	ids     []fl.ClientID
	index   map[fl.ClientID]uint32
	dim     int                // update entries in the ring (padded under distributed DP)
	ddp     *privacy.DDPParams // distributed DP's parameters, or nil
	started bool
	done    bool
}

func (v *secaggServer) Next() (map[fl.ClientID][]byte, bool, error) {
	if v.done {
		return nil, true, nil
	}
	if !v.started {
		v.started = true
		msgs := make(map[fl.ClientID][]byte, len(v.ids))
		for i, id := range v.ids {
			msgs[id] = encodeSetup(&v.cfg, uint32(i))
			if v.ddp != nil && v.ddp.CountStddev > 0 {
				msgs[id] = withSetupClip(msgs[id], v.ddp.Clip)
			}
		}
		return msgs, false, nil
	}
	out, err := v.srv.Advance()
	if err != nil {
		if errors.Is(err, secagg.ErrAbandoned) {
			return nil, false, fmt.Errorf("%w: secagg round %d: %v", fl.ErrRoundAbandoned, v.cfg.Round, err)
		}
		return nil, false, err
	}
	if v.srv.Stage() == secagg.StageDone {
		v.done = true
		return nil, true, nil
	}
	msgs := make(map[fl.ClientID][]byte, len(out))
	for _, o := range out {
		msgs[v.ids[o.To]] = o.Data
	}
	return msgs, false, nil
}

func (v *secaggServer) Receive(from fl.ClientID, msg []byte) error {
	i, ok := v.index[from]
	if !ok {
		return fmt.Errorf("secagg: client %d is not in this round", from)
	}
	return v.srv.Receive(i, msg)
}

func (v *secaggServer) Drop(id fl.ClientID) {
	if i, ok := v.index[id]; ok {
		v.srv.MarkDropped(i)
	}
}

func (v *secaggServer) Result() (fl.SumResult, error) {
	r, err := v.srv.Result()
	if err != nil {
		if errors.Is(err, secagg.ErrAbandoned) {
			return fl.SumResult{}, fmt.Errorf("%w: secagg round %d: %v", fl.ErrRoundAbandoned, v.cfg.Round, err)
		}
		return fl.SumResult{}, err
	}
	if len(r.Sum) != v.dim+1 || len(r.Ring) != v.dim+2 {
		return fl.SumResult{}, fmt.Errorf("secagg: result has %d entries, want %d", len(r.Sum), v.dim+1)
	}
	if err := v.feasible(r.Ring, len(r.Survivors)); err != nil {
		return fl.SumResult{}, fmt.Errorf("%w: secagg round %d: %v; nothing released", fl.ErrRoundAbandoned, v.cfg.Round, err)
	}
	if v.ddp != nil {
		// Every survivor's masked input carried its noise share: the sum holds len(Survivors)
		// shares, and the engine accounts exactly that many (never more).
		if len(r.Survivors) < v.ddp.MinClients {
			return fl.SumResult{}, fmt.Errorf("%w: distributed DP round %d: %d survivors hold fewer than the %d noise shares the noise needs; nothing released",
				fl.ErrRoundAbandoned, v.cfg.Round, len(r.Survivors), v.ddp.MinClients)
		}
		sum, err := v.ddp.Decode(r.Ring[:v.dim], privacy.RotationSeed(v.cfg.RunID[:], v.cfg.Round))
		if err != nil {
			return fl.SumResult{}, fmt.Errorf("secagg round %d: %w", v.cfg.Round, err)
		}
		n := len(r.Survivors)
		res := fl.SumResult{Sum: sum, Weight: float64(n), Count: n}
		if v.ddp.CountStddev > 0 {
			// Only the noised count exists: Σ(bᵢ − ½) + noise, reported as Unclipped = that + n/2.
			res.Unclipped = v.ddp.DecodeCount(r.Ring[v.dim]) + float64(n)/2
		}
		return res, nil
	}
	sum := make([]float64, v.dim)
	for j := range sum {
		sum[j] = r.Sum[j] * v.cfg.MaxWeight // clients scaled their update by weight/MaxWeight
	}
	return fl.SumResult{Sum: sum, Weight: r.Weight, Unclipped: r.Sum[v.dim] / v.s.o.ClipRange, Count: len(r.Survivors)}, nil
}

// feasible checks the unmasked ring sum of count inputs against the range honest inputs add up
// to, in exact ring units (L = 2^Bits − 1 per input): every update entry in [0, count·L], that is
// |sum_j| ≤ count·ClipRange·maxWeight; the unclipped entry (Unclipped·ClipRange with Unclipped in
// [0, 1]) at least count·(L−1)/2, an unclipped count of at least 0 up to quantisation; and the
// weight, each at least 1 (quantised to at least ⌊L/maxWeight⌋) and at most maxWeight, in
// [count·⌊L/maxWeight⌋, count·L] and never 0, since the mean divides by it.
func (v *secaggServer) feasible(ring []uint32, count int) error {
	if err := secagg.FeasibleSum(&v.cfg, ring, count); err != nil {
		return fmt.Errorf("sum out of its feasible range (a client sent an out-of-range masked input): %w", err)
	}
	levels := uint64(1)<<v.cfg.Bits - 1
	// Under adaptive distributed DP the entry is the noised count, any value of the ring.
	if lo := uint64(count) * ((levels - 1) / 2); uint64(ring[v.dim]) < lo && (v.ddp == nil || v.ddp.CountStddev == 0) {
		return fmt.Errorf("unclipped count below 0 (ring %d < %d): a client sent an out-of-range masked input", ring[v.dim], lo)
	}
	perClient := uint64(math.Floor(minWeight * (float64(levels) / v.cfg.MaxWeight)))
	if lo := max(uint64(count)*perClient, 1); uint64(ring[v.dim+1]) < lo {
		return fmt.Errorf("total weight %g below %g, the least %d clients of weight ≥ %g can have (ring %d < %d): a client sent an out-of-range masked input",
			float64(ring[v.dim+1])*v.cfg.MaxWeight/float64(levels), float64(lo)*v.cfg.MaxWeight/float64(levels), count, float64(minWeight), ring[v.dim+1], lo)
	}
	return nil
}

// minWeight is the smallest aggregation weight of an honest client.
const minWeight = 1

// NewClient holds client id's input until the setup message arrives. At setup the update is
// scaled by weight/MaxWeight (the round's, from the setup) so the sum is the weighted sum; the
// unclipped bit rides as one more entry.
func (s *SecAgg) NewClient(round int, id fl.ClientID, in fl.SumInput) (fl.SumClient, error) {
	if !(in.Weight >= minWeight) || math.IsInf(in.Weight, 0) {
		return nil, fmt.Errorf("secagg input: weight %v must be finite and ≥ %d", in.Weight, minWeight)
	}
	if !(in.Unclipped >= 0 && in.Unclipped <= 1) {
		return nil, fmt.Errorf("secagg input: unclipped indicator %v must be in [0, 1]", in.Unclipped)
	}
	for j, x := range in.Update {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, fmt.Errorf("secagg input: entry %d is %v", j, x)
		}
	}
	return &secaggClient{s: s, round: round, id: id, in: in}, nil
}

type secaggClient struct {
	s     *SecAgg
	round int
	id    fl.ClientID
	in    fl.SumInput
	c     *secagg.Client
	clip  float64 // the round's clip under adaptive distributed DP (0: the announced one)
}

func (c *secaggClient) Handle(msg []byte) ([]byte, error) {
	if c.c != nil {
		return c.c.Handle(msg)
	}
	cfg, index, err := decodeSetup(msg)
	if err != nil {
		return nil, err
	}
	ringDim, err := c.s.ringDim(len(c.in.Update))
	if err != nil {
		return nil, err
	}
	if cfg.Round != uint64(c.round) || cfg.Dim != ringDim+1 {
		return nil, fmt.Errorf("secagg setup: round %d dim %d, the client holds round %d dim %d", cfg.Round, cfg.Dim, c.round, ringDim+1)
	}
	if cfg.Bits != c.s.o.Bits || cfg.ClipRange != c.s.o.ClipRange || cfg.NormDim != ringDim {
		return nil, errors.New("secagg setup: quantisation parameters differ from the run's")
	}
	if cfg.RunID == ([16]byte{}) {
		return nil, errors.New("secagg setup: the all-zero run id (an honest server draws 16 random bytes per run)")
	}
	if c.s.o.RunID != ([16]byte{}) && cfg.RunID != c.s.o.RunID {
		return nil, fmt.Errorf("secagg setup: run %x, this client joined run %x", cfg.RunID, c.s.o.RunID)
	}
	if c.in.Weight > cfg.MaxWeight {
		return nil, fmt.Errorf("secagg setup: the round's largest weight %v is below this client's %v", cfg.MaxWeight, c.in.Weight)
	}
	if cfg.Clients < c.s.minCohort || cfg.Threshold < c.s.minThreshold {
		return nil, fmt.Errorf("%w: secagg round of %d clients with threshold %d; this client masks only among ≥ %d with threshold ≥ %d",
			fl.ErrPolicy, cfg.Clients, cfg.Threshold, c.s.minCohort, c.s.minThreshold)
	}
	if err := c.checkDDP(&cfg); err != nil {
		return nil, err
	}
	if err := c.roundClip(msg); err != nil {
		return nil, err
	}
	sc, err := secagg.NewClient(cfg, index, c.s.rand(c.round, c.id))
	if err != nil {
		return nil, err
	}
	if c.s.o.DDP != nil {
		enc, err := c.encodeDDP(&cfg)
		if err != nil {
			return nil, err
		}
		if err := sc.SetEncodedInput(enc); err != nil {
			return nil, err
		}
	} else if err := sc.SetInput(c.vector(cfg.MaxWeight), c.in.Weight); err != nil {
		return nil, err
	}
	c.in = fl.SumInput{}
	c.c = sc
	return sc.Start()
}

// roundClip reads the round's clip under adaptive distributed DP (required then, refused
// otherwise: a fixed-clip run's clip is the announced one).
func (c *secaggClient) roundClip(msg []byte) error {
	clip, ok := setupClip(msg)
	d := c.s.o.DDP
	switch {
	case d == nil || d.CountStddev == 0:
		if ok {
			return errors.New("secagg setup: a round clip in a run without adaptive distributed DP")
		}
		return nil
	case !ok:
		return errors.New("secagg setup: an adaptive distributed-DP round without its clip")
	case !(clip > 0) || math.IsInf(clip, 0):
		return fmt.Errorf("secagg setup: round clip %v", clip)
	}
	c.clip = clip
	return nil
}

// ddp is the client's distributed-DP configuration for the round.
func (c *secaggClient) ddp() privacy.DDPConfig {
	d := *c.s.o.DDP
	if c.clip > 0 {
		d.Clip = c.clip
	}
	return d
}

// checkDDP holds a distributed-DP round to the client's own policy: its noise multiplier and
// the number of shares the noise is split into, and a cohort that can reach those shares.
func (c *secaggClient) checkDDP(cfg *secagg.Config) error {
	d := c.s.o.DDP
	pol := c.s.ddpPolicy
	switch {
	case d == nil && pol != nil:
		return fmt.Errorf("%w: the round adds no distributed-DP noise, and this client requires it", fl.ErrPolicy)
	case d == nil:
		return nil
	case cfg.Clients < d.MinClients:
		return fmt.Errorf("%w: a distributed-DP round of %d clients cannot hold the %d noise shares its noise is split into", fl.ErrPolicy, cfg.Clients, d.MinClients)
	case pol == nil:
		return nil
	case d.NoiseMultiplier < pol.MinNoiseMultiplier:
		return fmt.Errorf("%w: the round's distributed noise multiplier %v is below this client's minimum %v", fl.ErrPolicy, d.NoiseMultiplier, pol.MinNoiseMultiplier)
	case d.CountStddev > 0 && withCount(d.NoiseMultiplier, 2*d.CountStddev) < pol.MinNoiseMultiplier:
		// The adaptive clip's count (sensitivity 1 in its ±1 units, summed noise 2·CountStddev)
		// is released with the update: the two are one mechanism of multiplier z with z⁻² =
		// z_Δ⁻² + z_c⁻² (as central DP's adaptive clipping counts it), and that z meets the floor.
		return fmt.Errorf("%w: the round's noise multiplier with the adaptive clip's count, (%v⁻² + %v⁻²)^−½ = %.4g, is below this client's minimum %v",
			fl.ErrPolicy, d.NoiseMultiplier, 2*d.CountStddev, withCount(d.NoiseMultiplier, 2*d.CountStddev), pol.MinNoiseMultiplier)
	case pol.MaxShares > 0 && d.MinClients > pol.MaxShares:
		return fmt.Errorf("%w: the round splits its noise into %d shares, this client contributes to at most %d (its share would be below 1/%d of the noise)",
			fl.ErrPolicy, d.MinClients, pol.MaxShares, pol.MaxShares)
	}
	return nil
}

// withCount is the noise multiplier of an update of multiplier z released with a count of
// multiplier countZ: (z⁻² + countZ⁻²)^−½.
func withCount(z, countZ float64) float64 { return 1 / math.Sqrt(1/(z*z)+1/(countZ*countZ)) }

// encodeDDP is the client's distributed-DP input: its update rotated with the round's public
// seed (run id and round), scaled, conditionally rounded and noised with its share, in Z_{2^b};
// then the unclipped entry — under adaptive clipping its ±1 indicator plus its share of the
// count noise, otherwise a constant (an un-noised count would be released as is) — and the
// unit weight.
func (c *secaggClient) encodeDDP(cfg *secagg.Config) ([]uint32, error) {
	p, err := c.ddp().Params(len(c.in.Update))
	if err != nil {
		return nil, fmt.Errorf("secagg: %w", err)
	}
	src, err := c.noiseSource()
	if err != nil {
		return nil, err
	}
	enc, err := p.Encode(c.in.Update, privacy.RotationSeed(cfg.RunID[:], cfg.Round), src)
	if err != nil {
		return nil, fmt.Errorf("secagg input: %w", err)
	}
	levels := uint32(uint64(1)<<cfg.Bits - 1)
	if p.CountShare > 0 {
		count, err := p.EncodeCount(c.in.Unclipped == 1, true, src)
		if err != nil {
			return nil, err
		}
		return append(enc, count, levels), nil
	}
	return append(enc, (levels-1)/2, levels), nil
}

// noiseSource is the randomness of the client's noise share and rounding: the OS CSPRNG, or,
// in a seeded simulation only (Rand set), a source seeded from the client's reproducible stream.
func (c *secaggClient) noiseSource() (*privacy.Source, error) {
	if c.s.o.Rand == nil {
		return privacy.NewSource()
	}
	var b [8]byte
	// A stream of its own (round −r−1), apart from the one the protocol half reads.
	if _, err := io.ReadFull(c.s.o.Rand(-c.round-1, c.id), b[:]); err != nil {
		return nil, fmt.Errorf("secagg noise seed: %w", err)
	}
	return privacy.NewSeededSource(binary.LittleEndian.Uint64(b[:]) ^ 0xdd9), nil
}

// RequireDDP sets a client's floor on the distributed-DP noise of the rounds it masks its update
// in; with it, the client also refuses rounds without distributed DP.
func (s *SecAgg) RequireDDP(p DDPPolicy) error {
	if p.MinNoiseMultiplier < 0 || p.MaxShares < 0 || math.IsNaN(p.MinNoiseMultiplier) {
		return fmt.Errorf("secagg: distributed-DP policy bounds must be ≥ 0, got %+v", p)
	}
	s.ddpPolicy = &p
	return nil
}

// vector is the protocol input: the update scaled by weight/maxWeight, then the unclipped bit
// (scaled to the clip range so that it survives quantisation).
func (c *secaggClient) vector(maxWeight float64) []float32 {
	scale := c.in.Weight / maxWeight
	vec := make([]float32, len(c.in.Update)+1)
	for j, x := range c.in.Update {
		vec[j] = float32(float64(x) * scale)
	}
	vec[len(c.in.Update)] = float32(c.in.Unclipped * c.s.o.ClipRange)
	return vec
}

// The setup message: magic (with the version), then the public round configuration and the
// recipient's index in the cohort, big-endian: run id (16 bytes), round u64, clients, dim, bits,
// degree, threshold, norm dim (u32 each), clip range, max weight (float64 bits), graph u8,
// graph seed (32 bytes), index u32.
const setupMagic = "SHOALSA2"

const setupSize = len(setupMagic) + 16 + 8 + 4*6 + 8 + 8 + 1 + 32 + 4

func encodeSetup(cfg *secagg.Config, index uint32) []byte {
	b := make([]byte, 0, setupSize)
	b = append(b, setupMagic...)
	b = append(b, cfg.RunID[:]...)
	b = binary.BigEndian.AppendUint64(b, cfg.Round)
	for _, v := range []int{cfg.Clients, cfg.Dim, cfg.Bits, cfg.Degree, cfg.Threshold, cfg.NormDim} {
		b = binary.BigEndian.AppendUint32(b, uint32(v))
	}
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(cfg.ClipRange))
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(cfg.MaxWeight))
	b = append(b, byte(cfg.Graph))
	b = append(b, cfg.GraphSeed[:]...)
	return binary.BigEndian.AppendUint32(b, index)
}

func decodeSetup(b []byte) (secagg.Config, uint32, error) {
	var cfg secagg.Config
	if len(b) == setupSize+8 { // with the round's distributed-DP clip (setupClip)
		b = b[:setupSize]
	}
	if len(b) != setupSize || string(b[:len(setupMagic)]) != setupMagic {
		return cfg, 0, fmt.Errorf("secagg setup: malformed message (%d bytes)", len(b))
	}
	p := b[len(setupMagic):]
	copy(cfg.RunID[:], p)
	p = p[16:]
	cfg.Round = binary.BigEndian.Uint64(p)
	p = p[8:]
	vals := make([]int, 6)
	for i := range vals {
		vals[i] = int(binary.BigEndian.Uint32(p))
		p = p[4:]
	}
	cfg.Clients, cfg.Dim, cfg.Bits, cfg.Degree, cfg.Threshold, cfg.NormDim = vals[0], vals[1], vals[2], vals[3], vals[4], vals[5]
	cfg.ClipRange = math.Float64frombits(binary.BigEndian.Uint64(p))
	cfg.MaxWeight = math.Float64frombits(binary.BigEndian.Uint64(p[8:]))
	cfg.Graph = secagg.GraphKind(p[16])
	copy(cfg.GraphSeed[:], p[17:49])
	index := binary.BigEndian.Uint32(p[49:])
	if err := cfg.Validate(); err != nil {
		return cfg, 0, fmt.Errorf("secagg setup: %w", err)
	}
	if int(index) >= cfg.Clients {
		return cfg, 0, fmt.Errorf("secagg setup: index %d outside a cohort of %d", index, cfg.Clients)
	}
	return cfg, index, nil
}

// Under distributed DP with adaptive clipping the setup message carries one more field, the
// round's clip S (float64 bits, big-endian), from which server and clients derive the round's γ,
// sensitivity and noise shares. (The privacy of a round does not depend on S: its noise is z
// times the sensitivity, both in units of S.)

func withSetupClip(msg []byte, clip float64) []byte {
	return binary.BigEndian.AppendUint64(msg, math.Float64bits(clip))
}

// setupClip returns the round's clip from a setup message, or false when it has none.
func setupClip(msg []byte) (float64, bool) {
	if len(msg) != setupSize+8 {
		return 0, false
	}
	return math.Float64frombits(binary.BigEndian.Uint64(msg[setupSize:])), true
}

// require sets a client's floors on the rounds it masks its update in (see Local).
func (s *SecAgg) require(minCohort, minThreshold int) {
	s.minCohort, s.minThreshold = minCohort, minThreshold
}
