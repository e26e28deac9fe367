package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime/debug"
	"time"

	"shoal/secagg"
)

func init() {
	register(command{words: "bench secagg", summary: "run one secure-aggregation round in-process and report time, bytes and correctness", run: runBenchSecAgg})
}

type secaggStageJSON struct {
	Clients             int     `json:"clients"`
	ClientSeconds       float64 `json:"client_seconds"` // mean per client that ran the stage
	ServerSeconds       float64 `json:"server_seconds"`
	ClientUploadBytes   float64 `json:"client_upload_bytes"`   // mean per client
	ClientDownloadBytes float64 `json:"client_download_bytes"` // mean per client
}

type secaggBenchJSON struct {
	Correct           bool                       `json:"correct"`
	Clients           int                        `json:"clients"`
	Survivors         int                        `json:"survivors"`
	Completed         int                        `json:"completed"`
	Dim               int                        `json:"dim"`
	Graph             string                     `json:"graph"`
	Degree            int                        `json:"degree"`
	Threshold         int                        `json:"threshold"`
	Bits              int                        `json:"bits"`
	RingBits          int                        `json:"ring_bits"`
	Malicious         bool                       `json:"malicious"`
	Dropout           float64                    `json:"dropout"`
	DropoutStage      string                     `json:"dropout_stage"`
	Dropped           int                        `json:"dropped"`
	ClientSeconds     float64                    `json:"client_seconds"`
	ServerSeconds     float64                    `json:"server_seconds"`
	ClientUploadBytes float64                    `json:"client_upload_bytes"`
	PlainUploadBytes  int                        `json:"plain_upload_bytes"`
	UploadRatio       float64                    `json:"upload_ratio"`
	Stages            map[string]secaggStageJSON `json:"stages"`
	PRG               secaggPRGJSON              `json:"prg"`
}

type secaggPRGJSON struct {
	KeystreamBytesPerSecond float64 `json:"keystream_bytes_per_second"`
	ExpandBytesPerSecond    float64 `json:"expand_bytes_per_second"`
	ClientBytes             float64 `json:"client_bytes"` // mean per completed client
	ClientBoundSeconds      float64 `json:"client_bound_seconds"`
	ServerBytes             int64   `json:"server_bytes"`
	ServerBoundSeconds      float64 `json:"server_bound_seconds"`
}

func runBenchSecAgg(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench secagg", flag.ContinueOnError)
	fs.SetOutput(stderr)
	clients := fs.Int("clients", 100, "number of clients n")
	dim := fs.Int("dim", 100_000, "entries per update")
	dropout := fs.Float64("dropout", 0.1, "fraction of clients that drop out")
	stageName := fs.String("dropout-stage", "masked", "stage at which they drop: advertise|share|masked|unmask (masked = after ShareKeys)")
	graphName := fs.String("graph", "harary", "masking graph: complete|harary")
	degree := fs.Int("degree", 0, "force the graph degree (0: chosen from the dropout and corruption fractions)")
	bits := fs.Int("bits", 16, "quantisation bits per entry")
	maxDropout := fs.Float64("max-dropout", -1, "tolerated dropout fraction for degree and threshold (default: --dropout)")
	maxCorrupt := fs.Float64("max-corrupt", 0.05, "tolerated fraction of clients colluding with the server")
	malicious := fs.Bool("malicious", false, "malicious-server variant (signatures and ConsistencyCheck)")
	seed := fs.Uint64("seed", 0, "seed for reproducible keys, inputs and dropouts (0: crypto/rand keys)")
	asJSON := fs.Bool("json", false, "write one JSON object to stdout")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErrorf("%v", err)
	}
	if fs.NArg() != 0 {
		return usageErrorf("unexpected arguments %q", fs.Args())
	}
	stages := map[string]secagg.Stage{"advertise": secagg.StageAdvertise, "share": secagg.StageShare,
		"masked": secagg.StageMasked, "unmask": secagg.StageUnmask}
	dropStage, ok := stages[*stageName]
	if !ok {
		return usageErrorf("--dropout-stage %q: want advertise, share, masked or unmask", *stageName)
	}
	var kind secagg.GraphKind
	switch *graphName {
	case "complete":
		kind = secagg.GraphComplete
	case "harary":
		kind = secagg.GraphHarary
	default:
		return usageErrorf("--graph %q: want complete or harary", *graphName)
	}
	if *clients < 2 || *clients > secagg.MaxClients {
		return usageErrorf("--clients %d out of range [2, %d]", *clients, secagg.MaxClients)
	}
	if *dim < 1 || *dim > secagg.MaxDim {
		return usageErrorf("--dim %d out of range [1, %d]", *dim, secagg.MaxDim)
	}
	if !(*dropout >= 0 && *dropout < 1) {
		return usageErrorf("--dropout %v not in [0, 1)", *dropout)
	}
	if *maxDropout < 0 {
		*maxDropout = *dropout
	}
	if *maxDropout < *dropout {
		return usageErrorf("--max-dropout %v is below --dropout %v", *maxDropout, *dropout)
	}
	n := *clients
	var k, t int
	var err error
	switch {
	case *degree != 0 && kind == secagg.GraphComplete && *degree != n-1:
		return usageErrorf("--degree %d: the complete graph of %d clients has degree %d", *degree, n, n-1)
	case *degree != 0:
		k = *degree
		if t, err = secagg.PlanThreshold(n, k, *maxDropout, kind); err != nil {
			return usageErrorf("%v", err)
		}
	default:
		if k, t, err = secagg.PlanGraph(n, *maxDropout, *maxCorrupt, kind, *malicious); err != nil {
			return usageErrorf("%v", err)
		}
	}
	if k == n-1 {
		kind = secagg.GraphComplete
	}
	cfg := secagg.Config{Round: 1, Clients: n, Dim: *dim, Bits: *bits, ClipRange: 1, MaxWeight: 1000,
		Graph: kind, Degree: k, Threshold: t}
	rng := rand.New(rand.NewPCG(*seed, 0x5ec))
	for i := range cfg.GraphSeed {
		cfg.GraphSeed[i] = byte(rng.Uint32())
	}
	spec := secagg.RoundSpec{Config: cfg, Check: true, Drop: map[secagg.ClientID]secagg.Stage{}}
	if *malicious {
		if err := withPKI(&spec, rng); err != nil {
			return err
		}
	}
	if err := spec.Config.Validate(); err != nil {
		return usageErrorf("%v", err)
	}
	dropped := int(*dropout * float64(n))
	for _, id := range rng.Perm(n)[:dropped] {
		spec.Drop[secagg.ClientID(id)] = dropStage
	}
	if *seed != 0 {
		spec.Rand = func(id secagg.ClientID) io.Reader {
			var s [32]byte
			s[0], s[1], s[2], s[3] = byte(id), byte(id>>8), byte(id>>16), 1
			for i := 8; i < 16; i++ {
				s[i] = byte(*seed >> (8 * (i - 8)))
			}
			return rand.NewChaCha8(s)
		}
	}
	update := make([]float32, *dim)
	spec.Input = func(id secagg.ClientID) ([]float32, float64, error) {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		r := rand.New(rand.NewPCG(*seed, uint64(id)))
		for i := range update {
			update[i] = float32(2*r.Float64() - 1)
		}
		return update, float64(1 + r.IntN(500)), nil
	}
	// The in-process round holds every client; their garbage (inputs, masked vectors) would
	// trigger GC assists charged to whichever party allocates next, often the server, which a
	// deployed server never pays. A larger GC target keeps the figures to the protocol's work.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	keystream, expand := secagg.MeasurePRG(100 * time.Millisecond)
	if !*asJSON {
		fmt.Fprintf(stdout, "secagg round: %d clients × %d entries, %s graph degree %d, threshold %d, %d bits (ring %d), %d drop at %s\n",
			n, *dim, kind, k, t, *bits, cfg.RingBits(), dropped, *stageName)
	}
	rep, err := secagg.RunRound(spec)
	if err != nil {
		return fmt.Errorf("bench secagg: %w", err)
	}
	out := summarise(rep, &spec.Config, *dropout, *stageName, dropped, keystream, expand, *malicious)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	fmt.Fprintf(stdout, "correct: %v   survivors: %d   completed: %d\n", out.Correct, out.Survivors, out.Completed)
	fmt.Fprintf(stdout, "client: %.4f s mean CPU (PRG bound %.4f s), upload %.0f B (plain %d B, ×%.3f)\n",
		out.ClientSeconds, out.PRG.ClientBoundSeconds, out.ClientUploadBytes, out.PlainUploadBytes, out.UploadRatio)
	fmt.Fprintf(stdout, "server: %.4f s (PRG bound %.4f s for %d PRG bytes)\n", out.ServerSeconds, out.PRG.ServerBoundSeconds, out.PRG.ServerBytes)
	for _, name := range []string{"advertise", "share", "masked", "consistency", "unmask"} {
		if s, ok := out.Stages[name]; ok {
			fmt.Fprintf(stdout, "  %-11s clients %5d  client %.5f s  server %.4f s  up %.0f B  down %.0f B\n",
				name, s.Clients, s.ClientSeconds, s.ServerSeconds, s.ClientUploadBytes, s.ClientDownloadBytes)
		}
	}
	if !out.Correct {
		return errors.New("bench secagg: unmasked sum differs from the plain sum of the survivors")
	}
	return nil
}

func summarise(rep *secagg.RoundReport, cfg *secagg.Config, dropout float64, stage string, dropped int, keystream, expand float64, malicious bool) secaggBenchJSON {
	out := secaggBenchJSON{Correct: rep.Correct, Clients: cfg.Clients, Survivors: len(rep.Result.Survivors),
		Completed: len(rep.Completed), Dim: cfg.Dim, Graph: cfg.Graph.String(), Degree: cfg.Degree,
		Threshold: cfg.Threshold, Bits: cfg.Bits, RingBits: cfg.RingBits(), Malicious: malicious,
		Dropout: dropout, DropoutStage: stage, Dropped: dropped, ServerSeconds: rep.ServerSeconds,
		PlainUploadBytes: (cfg.Dim*cfg.Bits + 7) / 8, Stages: map[string]secaggStageJSON{}}
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
	names := map[secagg.Stage]string{secagg.StageAdvertise: "advertise", secagg.StageShare: "share",
		secagg.StageMasked: "masked", secagg.StageConsistency: "consistency", secagg.StageUnmask: "unmask"}
	for st, name := range names {
		s := rep.Stages[st]
		if s.Clients == 0 && s.ServerSeconds == 0 {
			continue
		}
		j := secaggStageJSON{Clients: s.Clients, ServerSeconds: s.ServerSeconds}
		if s.Clients > 0 {
			c := float64(s.Clients)
			j.ClientSeconds, j.ClientUploadBytes, j.ClientDownloadBytes = s.ClientSeconds/c, float64(s.UploadBytes)/c, float64(s.DownloadBytes)/c
		}
		out.Stages[name] = j
	}
	out.PRG = secaggPRGJSON{KeystreamBytesPerSecond: keystream, ExpandBytesPerSecond: expand,
		ClientBytes: prg, ClientBoundSeconds: prg / keystream,
		ServerBytes: rep.ServerPRGBytes, ServerBoundSeconds: float64(rep.ServerPRGBytes) / keystream}
	return out
}

// withPKI gives every client an Ed25519 key and the config the matching verify keys.
func withPKI(spec *secagg.RoundSpec, rng *rand.Rand) error {
	n := spec.Config.Clients
	spec.SigningKeys = make([]ed25519.PrivateKey, n)
	spec.Config.VerifyKeys = make([]ed25519.PublicKey, n)
	for i := range n {
		var seed [ed25519.SeedSize]byte
		for j := range seed {
			seed[j] = byte(rng.Uint32())
		}
		spec.SigningKeys[i] = ed25519.NewKeyFromSeed(seed[:])
		spec.Config.VerifyKeys[i] = spec.SigningKeys[i].Public().(ed25519.PublicKey)
	}
	return nil
}
