package securesum

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"

	"shoal/fl"
	"shoal/privacy"
)

// DDPSimulation is a simulation-only stand-in for SecAgg under distributed DP that releases a
// sum with exactly the distribution SecAgg releases, at a fraction of the cost, for utility
// experiments with a thousand clients per round (docs/privacy.md, "Simulation fast path"):
//
//   - no masking: SecAgg's output is, by its correctness, the exact sum of the survivors'
//     vectors in Z_{2^(b+⌈log2 n⌉)}, which the server reduces modulo 2^b; this adapter adds the
//     same vectors modulo 2^b directly (reduction commutes with the sum);
//   - every client still clips, rotates, scales and conditionally rounds its own update with its
//     own randomness (the rounding error is part of what the experiment measures);
//   - Skellam: the clients send their rounded vectors without noise, and the server adds the
//     cohort's noise in one draw, Skellam with the summed parameter, which is exactly the law of
//     the sum of the survivors' independent shares (privacy.DDPParams.SkellamSum); ddgauss: a
//     sum of discrete Gaussians is not one, so each client draws its own share as in a real run.
//
// It protects nothing (the server sees each client's quantised update): it is built only by
// shoal simulate, never from an announced Spec, so no network client can be asked to use it.
type DDPSimulation struct {
	s *SecAgg
}

// SimulatedDDP returns the simulation fast path of this SecAgg's distributed DP.
func (s *SecAgg) SimulatedDDP() (*DDPSimulation, error) {
	if s.o.DDP == nil {
		return nil, errors.New("secagg: the distributed-DP simulation path needs distributed DP")
	}
	return &DDPSimulation{s: s}, nil
}

var _ fl.SecureSum = (*DDPSimulation)(nil)

func (d *DDPSimulation) Name() string { return d.s.Name() + "-ddp-simulated" }

func (d *DDPSimulation) Describe() string {
	c := d.s.o.DDP
	noise := "each client draws its own discrete Gaussian share"
	if c.Mechanism == privacy.MechanismSkellam {
		noise = "the survivors' Skellam shares drawn as one Skellam of the summed parameter (the same law)"
	}
	return fmt.Sprintf("SIMULATION of %s with distributed DP (%s, Z_2^%d): the released sum has exactly the distribution SecAgg releases "+
		"(each client clips, rotates and conditionally rounds its own update; %s; the sum taken modulo 2^%d without masking) — "+
		"no secure aggregation: the simulated server sees each quantised update; rounds with fewer than %d survivors are abandoned",
		d.s.Name(), c.Mechanism, c.Bits, noise, c.Bits, c.MinClients)
}

// Stages is the one exchange: the round's public parameters out, the encoded vectors back.
func (d *DDPSimulation) Stages() []string { return []string{"upload"} }

func (d *DDPSimulation) Sensitivity(clip float64, dim int) float64 { return d.s.Sensitivity(clip, dim) }

// NewServer starts a round among clients, abandoned (as SecAgg's) below the minimum of shares.
func (d *DDPSimulation) NewServer(round int, clients []fl.ClientID, dim int, maxWeight float64) (fl.SumServer, error) {
	c := d.s.o.DDP
	if len(clients) < c.MinClients {
		return nil, fmt.Errorf("%w: distributed DP round %d: %d clients hold inputs, fewer than the %d noise shares the noise is split into",
			fl.ErrRoundAbandoned, round, len(clients), c.MinClients)
	}
	if maxWeight != 1 {
		return nil, fmt.Errorf("secagg: distributed DP needs unit weights, the round's largest is %v", maxWeight)
	}
	p, err := d.s.roundDDP(round).Params(dim)
	if err != nil {
		return nil, fmt.Errorf("secagg round %d: %w", round, err)
	}
	runID, err := d.s.RunID()
	if err != nil {
		return nil, err
	}
	members := make(map[fl.ClientID]bool, len(clients))
	for _, id := range clients {
		members[id] = true
	}
	entries := p.PaddedDim
	if p.CountShare > 0 {
		entries++ // the adaptive clip's count
	}
	return &ddpSimServer{d: d, p: p, round: round, runID: runID, members: members, sum: make([]uint32, entries)}, nil
}

type ddpSimServer struct {
	d       *DDPSimulation
	p       privacy.DDPParams
	round   int
	runID   [16]byte
	members map[fl.ClientID]bool

	mu      sync.Mutex
	sum     []uint32
	got     map[fl.ClientID]bool
	started bool
}

func (v *ddpSimServer) Next() (map[fl.ClientID][]byte, bool, error) {
	if v.started {
		return nil, true, nil
	}
	v.started = true
	v.got = make(map[fl.ClientID]bool, len(v.members))
	setup := make([]byte, 0, simSetupSize)
	setup = append(setup, v.runID[:]...)
	setup = binary.BigEndian.AppendUint64(setup, uint64(v.round))
	setup = binary.BigEndian.AppendUint64(setup, math.Float64bits(v.p.Clip))
	msgs := make(map[fl.ClientID][]byte, len(v.members))
	for id := range v.members {
		msgs[id] = setup
	}
	return msgs, false, nil
}

// simSetupSize is the simulated setup: run id, round, the round's clip.
const simSetupSize = 16 + 8 + 8

// Receive adds a client's vector (D little-endian uint32 in [0, 2^b), then the count entry under
// adaptive clipping) to the sum.
func (v *ddpSimServer) Receive(from fl.ClientID, msg []byte) error {
	if !v.members[from] {
		return fmt.Errorf("secagg: client %d is not in this round", from)
	}
	if len(msg) != 4*len(v.sum) {
		return fmt.Errorf("secagg: client %d sent %d bytes, want %d", from, len(msg), 4*len(v.sum))
	}
	mask := uint32(1)<<v.p.Bits - 1
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.got[from] {
		return fmt.Errorf("secagg: client %d answered twice", from)
	}
	var bad uint32
	for i := range v.sum {
		bad |= binary.LittleEndian.Uint32(msg[4*i:]) &^ mask
	}
	if bad != 0 {
		return fmt.Errorf("secagg: client %d sent entries outside Z_2^%d", from, v.p.Bits)
	}
	v.got[from] = true
	for i := range v.sum {
		v.sum[i] = (v.sum[i] + binary.LittleEndian.Uint32(msg[4*i:])) & mask
	}
	return nil
}

func (v *ddpSimServer) Drop(fl.ClientID) {}

func (v *ddpSimServer) Result() (fl.SumResult, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := len(v.got)
	if n < v.p.MinClients {
		return fl.SumResult{}, fmt.Errorf("%w: distributed DP round %d: %d survivors hold fewer than the %d noise shares the noise needs; nothing released",
			fl.ErrRoundAbandoned, v.round, n, v.p.MinClients)
	}
	vec := v.sum[:v.p.PaddedDim]
	if v.p.Mechanism == privacy.MechanismSkellam {
		src, err := v.d.noiseSource(v.round, -1)
		if err != nil {
			return fl.SumResult{}, err
		}
		if err := v.p.SkellamSum(vec, n, src); err != nil {
			return fl.SumResult{}, fmt.Errorf("secagg round %d: %w", v.round, err)
		}
		if v.p.CountShare > 0 {
			if v.sum[len(vec)], err = v.p.SkellamCountSum(v.sum[len(vec)], n, src); err != nil {
				return fl.SumResult{}, fmt.Errorf("secagg round %d: %w", v.round, err)
			}
		}
	}
	sum, err := v.p.Decode(vec, privacy.RotationSeed(v.runID[:], uint64(v.round)))
	if err != nil {
		return fl.SumResult{}, fmt.Errorf("secagg round %d: %w", v.round, err)
	}
	res := fl.SumResult{Sum: sum, Weight: float64(n), Count: n}
	if v.p.CountShare > 0 {
		res.Unclipped = v.p.DecodeCount(v.sum[len(vec)]) + float64(n)/2
	}
	return res, nil
}

// noiseSource is the randomness of client id (−1: the server's summed noise) in a round: a
// seeded source in a seeded simulation, crypto/rand otherwise.
func (d *DDPSimulation) noiseSource(round int, id fl.ClientID) (*privacy.Source, error) {
	c := secaggClient{s: d.s, round: round, id: id}
	return c.noiseSource()
}

func (d *DDPSimulation) NewClient(round int, id fl.ClientID, in fl.SumInput) (fl.SumClient, error) {
	// SecAgg's input checks, less the scan for non-finite entries, which the encoder repeats.
	if _, err := d.s.NewClient(round, id, fl.SumInput{Weight: in.Weight, Unclipped: in.Unclipped}); err != nil {
		return nil, err
	}
	return &ddpSimClient{d: d, round: round, id: id, in: in}, nil
}

type ddpSimClient struct {
	d     *DDPSimulation
	round int
	id    fl.ClientID
	in    fl.SumInput
}

func (c *ddpSimClient) Handle(msg []byte) ([]byte, error) {
	if len(msg) != simSetupSize || binary.BigEndian.Uint64(msg[16:]) != uint64(c.round) {
		return nil, errors.New("secagg: malformed simulated setup")
	}
	cfg := *c.d.s.o.DDP
	if cfg.CountStddev > 0 {
		cfg.Clip = math.Float64frombits(binary.BigEndian.Uint64(msg[24:]))
	}
	p, err := cfg.Params(len(c.in.Update))
	if err != nil {
		return nil, fmt.Errorf("secagg: %w", err)
	}
	src, err := c.d.noiseSource(c.round, c.id)
	if err != nil {
		return nil, err
	}
	seed := privacy.RotationSeed(msg[:16], uint64(c.round))
	var enc []uint32
	if p.Mechanism == privacy.MechanismSkellam {
		enc, err = p.EncodeWithoutNoise(c.in.Update, seed, src)
	} else {
		enc, err = p.Encode(c.in.Update, seed, src)
	}
	if err != nil {
		return nil, fmt.Errorf("secagg input: %w", err)
	}
	if p.CountShare > 0 {
		count, err := p.EncodeCount(c.in.Unclipped == 1, p.Mechanism != privacy.MechanismSkellam, src)
		if err != nil {
			return nil, err
		}
		enc = append(enc, count)
	}
	out := make([]byte, 4*len(enc))
	for i, e := range enc {
		binary.LittleEndian.PutUint32(out[4*i:], e)
	}
	return out, nil
}
