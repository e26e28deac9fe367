package he

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"iter"
	"math"
	"math/rand/v2"
	"time"
)

// BenchConfig describes one benchmark (`shoal bench he`): a key ceremony and one encrypted
// round on synthetic updates.
type BenchConfig struct {
	Params    *Params // nil: DefaultParams()
	Clients   int     // clients in the round, at least MinContributors
	Committee int     // decryption committee size K, in [2, Clients]: the first K clients
	Threshold int     // members needed to decrypt, T, in [2, Committee]
	Dim       int     // update dimension, in [1, MaxDim]
	// Dropout is the probability, in [0, 1), that a client drops out before uploading.
	Dropout float64
	// CommitteeOffline committee members, in [0, Committee], are unreachable at decryption
	// time (they approved the round's contributor set before leaving); more than
	// Committee−Threshold abandons the round.
	CommitteeOffline int
	// ApprovalOffline of those, in [0, CommitteeOffline], are unreachable already when the
	// round closes, so they do not approve it either: more than Committee−ApprovalQuorum
	// abandons the round.
	ApprovalOffline int
	// MinContributors is the server's and the members' minimum of distinct uploads (0:
	// DefaultMinContributors).
	MinContributors int
	// Seed seeds the synthetic updates, weights and dropouts. Keys always come from
	// crypto/rand.
	Seed uint64
}

// Bench is a benchmark whose key ceremony has run; Run runs encrypted rounds with its keys.
// A Bench is for use by one goroutine at a time.
type Bench struct {
	cfg          BenchConfig
	params       *Params
	ids          []PartyID // every client; the committee is ids[:Committee]
	sim          *Simulation
	setup        *PublicSetup
	keys         map[PartyID]*KeyMaterial
	setupSeconds float64
	round        uint64 // of the last Run
}

// BenchReport is what a benchmark measured. Wall-clock seconds are followed by CPU seconds
// (user+system, all threads, shoal/internal/cputime) of the same phases: on a busy machine the
// wall-clock figures mostly measure the wait for a core. Signing and checking the signatures
// and digests that keep the server honest are inside the phases they belong to: the client's
// signature in ClientEncrypt…, the server's check of each upload in ServerAggregate…, the
// members' check of the manifest in Approve…, and each active member's check and re-addition
// of every contribution's c1 halves in Decrypt… (MemberShareCPUSeconds per member).
type BenchReport struct {
	Params               *Params
	Correct              bool    // the sum is within ErrorBoundSum and every upload was counted
	MaxAbsError          float64 // decrypted mean vs plain mean
	MaxAbsErrorSum       float64 // decrypted weighted sum (and total weight) vs plain
	ErrorBoundSum        float64 // Params.MaxAbsError(Threshold): the stated bound on the sum
	SmudgingSecurityBits float64
	Uploaded             int // clients that uploaded
	Ciphertexts          int // per upload
	SetupSeconds         float64
	// ClientEncrypt… are means per uploading client.
	ClientEncryptSeconds      float64
	ServerAggregateSeconds    float64
	DecryptSeconds            float64 // shares + combine + decode
	ApproveSeconds            float64 // every approving member's check of the manifest
	ClientEncryptCPUSeconds   float64
	ServerAggregateCPUSeconds float64
	DecryptCPUSeconds         float64
	ApproveCPUSeconds         float64
	MemberShareCPUSeconds     float64 // one active member: verify the request, re-add the c1 halves, compute its share
	ClientUploadBytes         int
	PlainUploadBytes          int     // the update as float32
	Expansion                 float64 // ClientUploadBytes / PlainUploadBytes
	DecryptShareBytes         int
	DecryptRequestBytes       int // to each active member: manifest, approvals and every contribution's c1 halves
	ApprovalRequestBytes      int // to each reachable member: the manifest
	ApprovalBytes             int // one member's approval
}

// check refuses a configuration the benchmark cannot run, naming the offending field.
func (c *BenchConfig) check() error {
	least, err := minContributors(c.MinContributors)
	if err != nil {
		return fmt.Errorf("he bench: %w", err)
	}
	switch {
	case c.Clients < least:
		return fmt.Errorf("he bench: clients %d < the minimum of contributors %d (fewer would expose individual updates)", c.Clients, least)
	case c.Committee < 2 || c.Committee > c.Clients:
		return fmt.Errorf("he bench: committee %d not in [2, clients=%d]", c.Committee, c.Clients)
	case c.Threshold < 2 || c.Threshold > c.Committee:
		return fmt.Errorf("he bench: threshold %d not in [2, committee=%d]", c.Threshold, c.Committee)
	case c.Dim < 1 || c.Dim > MaxDim:
		return fmt.Errorf("he bench: dim %d not in [1, %d]", c.Dim, MaxDim)
	case math.IsNaN(c.Dropout) || c.Dropout < 0 || c.Dropout >= 1:
		return fmt.Errorf("he bench: dropout %v not in [0, 1)", c.Dropout)
	case c.CommitteeOffline < 0 || c.CommitteeOffline > c.Committee:
		return fmt.Errorf("he bench: committee offline %d not in [0, committee=%d]", c.CommitteeOffline, c.Committee)
	case c.ApprovalOffline < 0 || c.ApprovalOffline > c.CommitteeOffline:
		return fmt.Errorf("he bench: approval offline %d not in [0, committee offline=%d]", c.ApprovalOffline, c.CommitteeOffline)
	}
	return nil
}

// NewBench checks cfg and runs the key ceremony of its committee in-process, with keys from
// crypto/rand and identities from an in-memory CA (NewSimulation). It returns ctx's error if
// ctx is done when the ceremony ends.
func NewBench(ctx context.Context, cfg BenchConfig) (*Bench, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	b := &Bench{cfg: cfg, params: cfg.Params, ids: make([]PartyID, cfg.Clients)}
	if b.params == nil {
		b.params = DefaultParams()
	}
	for i := range b.ids {
		b.ids[i] = PartyID(i + 1)
	}
	sim, err := NewSimulation()
	if err != nil {
		return nil, err
	}
	sim.MinContributors = cfg.MinContributors
	b.sim = sim
	t0 := time.Now()
	setup, keys, err := RunCeremony(sim, b.params, b.ids[:cfg.Committee], cfg.Threshold, crand.Reader)
	if err != nil {
		return nil, fmt.Errorf("key ceremony: %w", err)
	}
	b.setupSeconds = time.Since(t0).Seconds()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.setup, b.keys = setup, keys
	return b, nil
}

// Params returns the benchmark's parameters.
func (b *Bench) Params() *Params { return b.params }

// benchUpdates accumulates what the synthetic round's clients uploaded, in the clear.
type benchUpdates struct {
	plainSum    []float64 // Σ weight·values
	plainWeight float64
	uploaded    int
}

// updates generates the synthetic round, seeded by b.cfg.Seed: each client drops out with
// probability b.cfg.Dropout, otherwise uploads values uniform in [−1, 1) with a weight in
// [1, 600] (examples held, as in an MNIST partition), which acc accumulates. The values slice is
// reused between clients; ctx's error ends the sequence.
func (b *Bench) updates(ctx context.Context, acc *benchUpdates) iter.Seq2[PartyID, Update] {
	rng := rand.New(rand.NewPCG(b.cfg.Seed, b.cfg.Seed^0x9e3779b97f4a7c15))
	acc.plainSum = make([]float64, b.cfg.Dim)
	values := make([]float32, b.cfg.Dim)
	return func(yield func(PartyID, Update) bool) {
		for _, id := range b.ids {
			if ctx.Err() != nil {
				return
			}
			if rng.Float64() < b.cfg.Dropout {
				continue // dropped before upload
			}
			w := float64(1 + rng.IntN(600))
			for i := range values {
				values[i] = float32(2*rng.Float64() - 1)
				acc.plainSum[i] += float64(values[i]) * w
			}
			acc.plainWeight += w
			acc.uploaded++
			if !yield(id, Update{Values: values, Weight: w}) {
				return
			}
		}
	}
}

// Run runs one encrypted round (round numbers count up from 1) with the ceremony's keys: the
// clients that do not drop out encrypt and upload, the online committee members decrypt, and
// the result is compared with the plain sum. A result outside the error bound is reported
// (BenchReport.Correct), not returned as an error. Fewer online members than the threshold
// returns an error wrapping ErrNotEnoughMembers; a done ctx returns ctx's error.
func (b *Bench) Run(ctx context.Context) (*BenchReport, error) {
	b.round++
	var acc benchUpdates
	approvers := b.ids[b.cfg.ApprovalOffline:b.cfg.Committee]
	online := b.ids[b.cfg.CommitteeOffline:b.cfg.Committee]
	agg, stats, err := RunRound(b.sim, b.setup, b.keys, b.round, b.cfg.Dim, b.updates(ctx, &acc), approvers, online)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("encrypted round: %w", err)
	}
	return b.report(agg, stats, &acc), nil
}

// RunBench runs a benchmark: NewBench (the key ceremony), then one round.
func RunBench(ctx context.Context, cfg BenchConfig) (*BenchReport, error) {
	b, err := NewBench(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return b.Run(ctx)
}

// report compares the decrypted aggregate with the plain one and gathers the round's costs.
func (b *Bench) report(agg *Aggregate, stats *RoundStats, acc *benchUpdates) *BenchReport {
	p, dim := b.params, b.cfg.Dim
	errSum, errMean := 0.0, 0.0
	mean := agg.Mean()
	for i := range acc.plainSum {
		errSum = math.Max(errSum, math.Abs(agg.Sum[i]-acc.plainSum[i]))
		errMean = math.Max(errMean, math.Abs(mean[i]-acc.plainSum[i]/acc.plainWeight))
	}
	errSum = math.Max(errSum, math.Abs(agg.TotalWeight-acc.plainWeight))
	bound := p.MaxAbsError(b.cfg.Threshold)
	uploads := float64(max(stats.Uploads, 1))
	return &BenchReport{
		Params:                    p,
		Correct:                   errSum <= bound && len(agg.Contributors) == acc.uploaded,
		MaxAbsError:               errMean,
		MaxAbsErrorSum:            errSum,
		ErrorBoundSum:             bound,
		SmudgingSecurityBits:      p.SmudgingSecurityBits(acc.uploaded, b.cfg.Committee, dim),
		Uploaded:                  acc.uploaded,
		Ciphertexts:               p.CiphertextsFor(dim),
		SetupSeconds:              b.setupSeconds,
		ClientEncryptSeconds:      stats.EncryptSeconds / uploads,
		ServerAggregateSeconds:    stats.AggregateSeconds,
		DecryptSeconds:            stats.DecryptSeconds,
		ClientEncryptCPUSeconds:   stats.EncryptCPUSeconds / uploads,
		ServerAggregateCPUSeconds: stats.AggregateCPUSeconds,
		DecryptCPUSeconds:         stats.DecryptCPUSeconds,
		ApproveSeconds:            stats.ApproveSeconds,
		ApproveCPUSeconds:         stats.ApproveCPUSeconds,
		MemberShareCPUSeconds:     stats.MemberShareCPUSeconds,
		ApprovalRequestBytes:      stats.ApprovalRequestBytes,
		ApprovalBytes:             stats.ApprovalBytes,
		ClientUploadBytes:         stats.UploadBytes,
		PlainUploadBytes:          4 * dim,
		Expansion:                 float64(stats.UploadBytes) / float64(4*dim),
		DecryptShareBytes:         stats.ShareBytes,
		DecryptRequestBytes:       stats.RequestBytes,
	}
}
