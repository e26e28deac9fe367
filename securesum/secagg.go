package securesum

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"shoal/fl"
	"shoal/secagg"
)

// SecAggOptions configures SecAgg (complete graph) or SecAgg+ (random Harary graph).
type SecAggOptions struct {
	Plus       bool    // SecAgg+: sparse random graph; otherwise the complete graph
	Bits       int     // quantisation bits per entry (default 16)
	ClipRange  float64 // entries are clipped to [−ClipRange, ClipRange] (default 0.5)
	MaxDropout float64 // tolerated dropout fraction, chooses degree and threshold (default 0.1)
	MaxCorrupt float64 // tolerated fraction of clients colluding with the server (default 0.1)
	Degree     int     // force the graph degree (0: planned from the fractions)
	// Rand returns the randomness of client id (or of the server, id −1) in a round; nil means
	// crypto/rand, the only choice for a real run.
	Rand func(round int, id fl.ClientID) io.Reader
}

// SecAgg is the fl.SecureSum of Bonawitz et al. 2017 and of SecAgg+ (Bell et al. 2020), for a
// semi-honest server: the server learns only the sum of the survivors' quantised updates.
type SecAgg struct{ o SecAggOptions }

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
	if s.o.Plus {
		graph = "random Harary graph (SecAgg+, Bell et al. 2020), 40-bit statistical security"
	}
	return fmt.Sprintf("%s: %s; semi-honest server learns only the sum; tolerates %.0f%% dropout and %.0f%% of clients colluding with the server; "+
		"%d-bit stochastic quantisation of entries clipped to ±%g, summed in Z_2^(b+⌈log2 n⌉)",
		s.Name(), graph, 100*s.o.MaxDropout, 100*s.o.MaxCorrupt, s.o.Bits, s.o.ClipRange)
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

// config plans the round's public parameters for n clients whose largest weight is maxWeight.
func (s *SecAgg) config(round, n, dim int, maxWeight float64) (secagg.Config, error) {
	kind := secagg.GraphComplete
	if s.o.Plus {
		kind = secagg.GraphHarary
	}
	var degree, threshold int
	var err error
	if s.o.Degree > 0 {
		degree = min(s.o.Degree, n-1)
		threshold, err = secagg.PlanThreshold(n, degree, s.o.MaxDropout, kind)
	} else {
		degree, threshold, err = secagg.PlanGraph(n, s.o.MaxDropout, s.o.MaxCorrupt, kind, false)
	}
	if err != nil {
		return secagg.Config{}, err
	}
	if degree == n-1 {
		kind = secagg.GraphComplete
	}
	cfg := secagg.Config{Round: uint64(round), Clients: n, Dim: dim + 1, Bits: s.o.Bits, ClipRange: s.o.ClipRange,
		MaxWeight: maxWeight, Graph: kind, Degree: degree, Threshold: threshold}
	if _, err := io.ReadFull(s.rand(round, -1), cfg.GraphSeed[:]); err != nil {
		return secagg.Config{}, fmt.Errorf("graph seed: %w", err)
	}
	return cfg, cfg.Validate()
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
	cfg, err := s.config(round, len(clients), dim, maxWeight)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", fl.ErrRoundAbandoned, err)
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
	return &secaggServer{s: s, cfg: cfg, srv: srv, ids: ids, index: index, dim: dim}, nil
}

type secaggServer struct {
	s       *SecAgg
	cfg     secagg.Config
	srv     *secagg.Server
	ids     []fl.ClientID
	index   map[fl.ClientID]uint32
	dim     int
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
		}
		return msgs, false, nil
	}
	out, err := v.srv.Advance()
	if err != nil {
		if errors.Is(err, secagg.ErrAbandoned) {
			return nil, false, fmt.Errorf("%w: %v", fl.ErrRoundAbandoned, err)
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
			return fl.SumResult{}, fmt.Errorf("%w: %v", fl.ErrRoundAbandoned, err)
		}
		return fl.SumResult{}, err
	}
	if len(r.Sum) != v.dim+1 {
		return fl.SumResult{}, fmt.Errorf("secagg: result has %d entries, want %d", len(r.Sum), v.dim+1)
	}
	sum := make([]float64, v.dim)
	for j := range sum {
		sum[j] = r.Sum[j] * v.cfg.MaxWeight // clients scaled their update by weight/MaxWeight
	}
	return fl.SumResult{Sum: sum, Weight: r.Weight, Unclipped: r.Sum[v.dim] / v.s.o.ClipRange, Count: len(r.Survivors)}, nil
}

// NewClient holds client id's input until the setup message arrives. At setup the update is
// scaled by weight/MaxWeight (the round's, from the setup) so the sum is the weighted sum; the
// unclipped bit rides as one more entry.
func (s *SecAgg) NewClient(round int, id fl.ClientID, in fl.SumInput) (fl.SumClient, error) {
	if !(in.Weight >= 0) || math.IsInf(in.Weight, 0) {
		return nil, fmt.Errorf("secagg input: weight %v must be finite and ≥ 0", in.Weight)
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
}

func (c *secaggClient) Handle(msg []byte) ([]byte, error) {
	if c.c != nil {
		return c.c.Handle(msg)
	}
	cfg, index, err := decodeSetup(msg)
	if err != nil {
		return nil, err
	}
	if cfg.Round != uint64(c.round) || cfg.Dim != len(c.in.Update)+1 {
		return nil, fmt.Errorf("secagg setup: round %d dim %d, the client holds round %d dim %d", cfg.Round, cfg.Dim, c.round, len(c.in.Update)+1)
	}
	if cfg.Bits != c.s.o.Bits || cfg.ClipRange != c.s.o.ClipRange {
		return nil, errors.New("secagg setup: quantisation parameters differ from the run's")
	}
	if c.in.Weight > cfg.MaxWeight {
		return nil, fmt.Errorf("secagg setup: the round's largest weight %v is below this client's %v", cfg.MaxWeight, c.in.Weight)
	}
	sc, err := secagg.NewClient(cfg, index, c.s.rand(c.round, c.id))
	if err != nil {
		return nil, err
	}
	if err := sc.SetInput(c.vector(cfg.MaxWeight), c.in.Weight); err != nil {
		return nil, err
	}
	c.in = fl.SumInput{}
	c.c = sc
	return sc.Start()
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

// The setup message: magic, version, then the public round configuration and the recipient's
// index in the cohort, big-endian.
const setupMagic = "SHOALSA1"

const setupSize = len(setupMagic) + 8 + 4*5 + 8 + 8 + 1 + 32 + 4

func encodeSetup(cfg *secagg.Config, index uint32) []byte {
	b := make([]byte, 0, setupSize)
	b = append(b, setupMagic...)
	b = binary.BigEndian.AppendUint64(b, cfg.Round)
	for _, v := range []int{cfg.Clients, cfg.Dim, cfg.Bits, cfg.Degree, cfg.Threshold} {
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
	if len(b) != setupSize || string(b[:len(setupMagic)]) != setupMagic {
		return cfg, 0, fmt.Errorf("secagg setup: malformed message (%d bytes)", len(b))
	}
	p := b[len(setupMagic):]
	cfg.Round = binary.BigEndian.Uint64(p)
	p = p[8:]
	vals := make([]int, 5)
	for i := range vals {
		vals[i] = int(binary.BigEndian.Uint32(p))
		p = p[4:]
	}
	cfg.Clients, cfg.Dim, cfg.Bits, cfg.Degree, cfg.Threshold = vals[0], vals[1], vals[2], vals[3], vals[4]
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
