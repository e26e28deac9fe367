package secagg

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime/debug"
	"time"
)

// BenchConfig describes one benchmark round: the cohort, how its masking graph is planned, and
// the synthetic inputs and dropouts (`shoal bench secagg`).
type BenchConfig struct {
	Clients int       // cohort size n, in [2, MaxClients]
	Dim     int       // entries per update, in [1, MaxDim]
	Bits    int       // quantisation bits per entry (see Config.Bits)
	Graph   GraphKind // GraphComplete or GraphHarary
	// Degree forces the graph degree; 0 lets PlanGraph choose it from MaxDropout and
	// MaxCorrupt. A forced degree gets its threshold from PlanThreshold.
	Degree int
	// Dropout is the fraction of clients, in [0, 1), that leave the round at DropoutStage
	// (StageAdvertise, StageShare, StageMasked, StageConsistency or StageUnmask).
	Dropout      float64
	DropoutStage Stage
	// MaxDropout (≥ Dropout) and MaxCorrupt, both in [0, 1), are the dropout and corruption
	// fractions the degree and threshold are planned to tolerate.
	MaxDropout float64
	MaxCorrupt float64
	// Malicious selects the malicious-server variant: every client gets an Ed25519 signing key.
	Malicious bool
	// Seed seeds the graph seed, the signing keys, the inputs and the choice of dropped clients.
	// A non-zero Seed also seeds each client's key randomness (reproducible rounds); with 0 the
	// clients draw their keys from crypto/rand.
	Seed uint64
}

// Bench is a planned benchmark round: the round's Config and its dropouts are fixed, the
// round has not run yet. Run runs it.
type Bench struct {
	seed    uint64
	spec    RoundSpec // Input is set by Run
	dropped int
}

// BenchStage is the cost of one stage of a benchmark round, per client that ran it.
type BenchStage struct {
	Clients             int     // clients that ran the stage
	ClientSeconds       float64 // mean CPU seconds per client that ran the stage
	ServerSeconds       float64 // server CPU seconds in the stage
	ClientUploadBytes   float64 // mean per client that ran the stage
	ClientDownloadBytes float64 // mean per client that ran the stage
}

// BenchPRG relates a round's PRG output to the speed of the PRG on this machine: the bound is
// the CPU time the PRG bytes alone take at the measured keystream rate.
type BenchPRG struct {
	KeystreamBytesPerSecond float64 // AES-128-CTR keystream (MeasurePRG)
	ExpandBytesPerSecond    float64 // keystream plus accumulation, as masks are applied
	ClientBytes             float64 // mean PRG bytes per completed client
	ClientBoundSeconds      float64
	ServerBytes             int64
	ServerBoundSeconds      float64
}

// BenchReport is what a benchmark round measured. Seconds are CPU seconds of the one thread
// that runs every party (see RunRound).
type BenchReport struct {
	Config            Config               // the round as planned: graph, degree, threshold, bits
	Dropped           int                  // clients that left the round
	Correct           bool                 // the unmasked sum equals the plain sum of the survivors' encoded inputs
	Survivors         int                  // clients whose masked input is in the sum
	Completed         int                  // clients that ran every stage
	ClientSeconds     float64              // mean per completed client, all stages
	ServerSeconds     float64              // all stages
	ClientUploadBytes float64              // mean per completed client, all stages
	PlainUploadBytes  int                  // the same update at Bits bits per entry, unmasked
	UploadRatio       float64              // ClientUploadBytes / PlainUploadBytes
	Stages            map[Stage]BenchStage // the stages that ran
	PRG               BenchPRG
	Round             *RoundReport // the raw measurements
}

// NewBench checks cfg, plans the masking graph (degree and threshold) and picks the clients that
// drop out. Errors from PlanGraph, PlanThreshold and Config.Validate are returned as they are.
func NewBench(cfg BenchConfig) (*Bench, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	rc, err := cfg.plan()
	if err != nil {
		return nil, err
	}
	n := cfg.Clients
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5ec))
	for i := range rc.GraphSeed {
		rc.GraphSeed[i] = byte(rng.Uint32())
	}
	b := &Bench{seed: cfg.Seed, spec: RoundSpec{Config: rc, Check: true, Drop: map[ClientID]Stage{}}}
	if cfg.Malicious {
		b.spec.SigningKeys, b.spec.Config.VerifyKeys = benchSigningKeys(n, rng)
	}
	if err := b.spec.Config.Validate(); err != nil {
		return nil, err
	}
	b.dropped = int(cfg.Dropout * float64(n))
	for _, id := range rng.Perm(n)[:b.dropped] {
		b.spec.Drop[ClientID(id)] = cfg.DropoutStage
	}
	if cfg.Seed != 0 {
		b.spec.Rand = benchClientRand(cfg.Seed)
	}
	return b, nil
}

// check refuses a configuration the benchmark cannot plan, naming the offending field.
func (c *BenchConfig) check() error {
	switch {
	case c.Clients < 2 || c.Clients > MaxClients:
		return fmt.Errorf("secagg bench: clients %d out of range [2, %d]", c.Clients, MaxClients)
	case c.Dim < 1 || c.Dim > MaxDim:
		return fmt.Errorf("secagg bench: dim %d out of range [1, %d]", c.Dim, MaxDim)
	case c.Graph != GraphComplete && c.Graph != GraphHarary:
		return fmt.Errorf("secagg bench: unknown graph %v", c.Graph)
	case !(c.Dropout >= 0 && c.Dropout < 1):
		return fmt.Errorf("secagg bench: dropout %v not in [0, 1)", c.Dropout)
	case c.DropoutStage < StageAdvertise || c.DropoutStage > StageUnmask:
		return fmt.Errorf("secagg bench: dropout stage %v: want advertise, share, masked, consistency or unmask", c.DropoutStage)
	case c.MaxDropout < c.Dropout:
		return fmt.Errorf("secagg bench: max dropout %v is below dropout %v", c.MaxDropout, c.Dropout)
	case c.Degree != 0 && c.Graph == GraphComplete && c.Degree != c.Clients-1:
		return fmt.Errorf("secagg bench: degree %d: the complete graph of %d clients has degree %d", c.Degree, c.Clients, c.Clients-1)
	}
	return nil
}

// plan returns the round's Config: the degree and threshold forced or planned, the graph
// complete whenever the degree is n-1. The graph seed and verify keys are left to NewBench.
func (c *BenchConfig) plan() (Config, error) {
	n, kind, k := c.Clients, c.Graph, c.Degree
	var t int
	var err error
	if k != 0 {
		t, err = PlanThreshold(n, k, c.MaxDropout, kind)
	} else {
		k, t, err = PlanGraph(n, c.MaxDropout, c.MaxCorrupt, kind, c.Malicious)
	}
	if err != nil {
		return Config{}, err
	}
	if k == n-1 {
		kind = GraphComplete
	}
	return Config{Round: 1, Clients: n, Dim: c.Dim, Bits: c.Bits, ClipRange: 1, MaxWeight: 1000,
		Graph: kind, Degree: k, Threshold: t}, nil
}

// benchSigningKeys gives every client an Ed25519 key drawn from rng, and returns the keys with
// the matching verify keys.
func benchSigningKeys(n int, rng *rand.Rand) ([]ed25519.PrivateKey, []ed25519.PublicKey) {
	priv := make([]ed25519.PrivateKey, n)
	pub := make([]ed25519.PublicKey, n)
	for i := range n {
		var seed [ed25519.SeedSize]byte
		for j := range seed {
			seed[j] = byte(rng.Uint32())
		}
		priv[i] = ed25519.NewKeyFromSeed(seed[:])
		pub[i] = priv[i].Public().(ed25519.PublicKey)
	}
	return priv, pub
}

// benchClientRand returns each client's key randomness: a ChaCha8 stream keyed by the client
// id and seed.
func benchClientRand(seed uint64) func(ClientID) io.Reader {
	return func(id ClientID) io.Reader {
		var s [32]byte
		s[0], s[1], s[2], s[3] = byte(id), byte(id>>8), byte(id>>16), 1
		for i := 8; i < 16; i++ {
			s[i] = byte(seed >> (8 * (i - 8)))
		}
		return rand.NewChaCha8(s)
	}
}

// benchInput returns the synthetic inputs: client id's update is uniform in [-1, 1) and its
// weight in [1, 500], both drawn from a generator seeded by the seed and id, so that an update
// can be regenerated on demand. The update slice is reused between calls; ctx's error stops
// the round.
func benchInput(ctx context.Context, seed uint64, dim int) func(ClientID) ([]float32, float64, error) {
	update := make([]float32, dim)
	return func(id ClientID) ([]float32, float64, error) {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		r := rand.New(rand.NewPCG(seed, uint64(id)))
		for i := range update {
			update[i] = float32(2*r.Float64() - 1)
		}
		return update, float64(1 + r.IntN(500)), nil
	}
}

// Config returns the round's configuration: the planned graph, degree and threshold.
func (b *Bench) Config() Config { return b.spec.Config }

// Dropped returns how many clients leave the round.
func (b *Bench) Dropped() int { return b.dropped }

// Run measures the PRG on this machine, runs the round in-process and summarises it. A round
// whose unmasked sum comes out wrong is reported (BenchReport.Correct), not returned as an
// error; an abandoned round is an error from RunRound. A cancelled ctx stops the round at the
// next client input, with an error.
//
// For its duration Run raises the process's GC target to 400 %: the in-process round holds
// every client, and their garbage (inputs, masked vectors) would otherwise trigger GC assists
// charged to whichever party allocates next, often the server, which a deployed server never
// pays.
func (b *Bench) Run(ctx context.Context) (*BenchReport, error) {
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	keystream, expand := MeasurePRG(100 * time.Millisecond)
	spec := b.spec
	spec.Input = benchInput(ctx, b.seed, spec.Config.Dim)
	rep, err := RunRound(spec)
	if err != nil {
		return nil, err // RunRound's errors say where they come from
	}
	out := summariseBench(rep, &spec.Config, keystream, expand)
	out.Dropped = b.dropped
	return out, nil
}

// RunBench plans and runs one benchmark round: NewBench, then Run.
func RunBench(ctx context.Context, cfg BenchConfig) (*BenchReport, error) {
	b, err := NewBench(cfg)
	if err != nil {
		return nil, err
	}
	return b.Run(ctx)
}

// summariseBench turns a round's raw measurements into means per client and PRG bounds, given
// the PRG's keystream and expansion rates in bytes per second.
func summariseBench(rep *RoundReport, cfg *Config, keystream, expand float64) *BenchReport {
	out := &BenchReport{Config: *cfg, Correct: rep.Correct, Survivors: len(rep.Result.Survivors),
		Completed: len(rep.Completed), ServerSeconds: rep.ServerSeconds,
		PlainUploadBytes: (cfg.Dim*cfg.Bits + 7) / 8, Stages: map[Stage]BenchStage{}, Round: rep}
	var cs, up, prg float64
	for _, id := range rep.Completed {
		cs += rep.ClientSeconds[id]
		up += float64(rep.ClientUpload[id])
		prg += float64(rep.ClientPRGBytes[id])
	}
	if c := float64(len(rep.Completed)); c > 0 {
		out.ClientSeconds, out.ClientUploadBytes, prg = cs/c, up/c, prg/c
	}
	out.UploadRatio = out.ClientUploadBytes / float64(out.PlainUploadBytes)
	for st := StageAdvertise; st <= StageUnmask; st++ {
		s := rep.Stages[st]
		if s.Clients == 0 && s.ServerSeconds == 0 {
			continue
		}
		j := BenchStage{Clients: s.Clients, ServerSeconds: s.ServerSeconds}
		if s.Clients > 0 {
			c := float64(s.Clients)
			j.ClientSeconds, j.ClientUploadBytes, j.ClientDownloadBytes = s.ClientSeconds/c, float64(s.UploadBytes)/c, float64(s.DownloadBytes)/c
		}
		out.Stages[st] = j
	}
	out.PRG = BenchPRG{KeystreamBytesPerSecond: keystream, ExpandBytesPerSecond: expand,
		ClientBytes: prg, ClientBoundSeconds: prg / keystream,
		ServerBytes: rep.ServerPRGBytes, ServerBoundSeconds: float64(rep.ServerPRGBytes) / keystream}
	return out
}
