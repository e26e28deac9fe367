package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

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

// benchSecAggFlags are the flags of bench secagg, as given.
type benchSecAggFlags struct {
	clients, dim, degree, bits      int
	dropout, maxDropout, maxCorrupt float64
	stage, graph                    string
	malicious, json                 bool
	seed                            uint64
}

func runBenchSecAgg(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseBenchSecAggFlags(args, stderr)
	if err != nil {
		return err
	}
	cfg, err := f.benchConfig()
	if err != nil {
		return err
	}
	b, err := secagg.NewBench(cfg)
	if err != nil {
		return usageErrorf("%v", err)
	}
	if !f.json {
		c := b.Config()
		fmt.Fprintf(stdout, "secagg round: %d clients × %d entries, %s graph degree %d, threshold %d, %d bits (ring %d), %d drop at %s\n",
			c.Clients, c.Dim, c.Graph, c.Degree, c.Threshold, c.Bits, c.RingBits(), b.Dropped(), f.stage)
	}
	rep, err := b.Run(ctx)
	if err != nil {
		return fmt.Errorf("bench secagg: %w", err)
	}
	out := f.output(rep)
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	printBenchSecAgg(stdout, &out)
	if !out.Correct {
		return errors.New("bench secagg: unmasked sum differs from the plain sum of the survivors")
	}
	return nil
}

func parseBenchSecAggFlags(args []string, stderr io.Writer) (*benchSecAggFlags, error) {
	f := &benchSecAggFlags{}
	fs := flag.NewFlagSet("bench secagg", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&f.clients, "clients", 100, "number of clients n")
	fs.IntVar(&f.dim, "dim", 100_000, "entries per update")
	fs.Float64Var(&f.dropout, "dropout", 0.1, "fraction of clients that drop out")
	fs.StringVar(&f.stage, "dropout-stage", "masked", "stage at which they drop: advertise|share|masked|unmask (masked = after ShareKeys)")
	fs.StringVar(&f.graph, "graph", "harary", "masking graph: complete|harary")
	fs.IntVar(&f.degree, "degree", 0, "force the graph degree (0: chosen from the dropout and corruption fractions)")
	fs.IntVar(&f.bits, "bits", 16, "quantisation bits per entry")
	fs.Float64Var(&f.maxDropout, "max-dropout", -1, "tolerated dropout fraction for degree and threshold (default: --dropout)")
	fs.Float64Var(&f.maxCorrupt, "max-corrupt", 0.05, "tolerated fraction of clients colluding with the server")
	fs.BoolVar(&f.malicious, "malicious", false, "malicious-server variant (signatures and ConsistencyCheck)")
	fs.Uint64Var(&f.seed, "seed", 0, "seed for reproducible keys, inputs and dropouts (0: crypto/rand keys)")
	fs.BoolVar(&f.json, "json", false, "write one JSON object to stdout")
	if err := parseArgs(fs, args); err != nil {
		return nil, err
	}
	return f, nil
}

// benchConfig checks the flags, naming the offending one, and maps them to a benchmark
// configuration; secagg.NewBench checks what only planning can tell.
func (f *benchSecAggFlags) benchConfig() (secagg.BenchConfig, error) {
	stages := map[string]secagg.Stage{"advertise": secagg.StageAdvertise, "share": secagg.StageShare,
		"masked": secagg.StageMasked, "unmask": secagg.StageUnmask}
	stage, ok := stages[f.stage]
	if !ok {
		return secagg.BenchConfig{}, usageErrorf("--dropout-stage %q: want advertise, share, masked or unmask", f.stage)
	}
	graphs := map[string]secagg.GraphKind{"complete": secagg.GraphComplete, "harary": secagg.GraphHarary}
	kind, ok := graphs[f.graph]
	if !ok {
		return secagg.BenchConfig{}, usageErrorf("--graph %q: want complete or harary", f.graph)
	}
	if f.clients < 2 || f.clients > secagg.MaxClients {
		return secagg.BenchConfig{}, usageErrorf("--clients %d out of range [2, %d]", f.clients, secagg.MaxClients)
	}
	if f.dim < 1 || f.dim > secagg.MaxDim {
		return secagg.BenchConfig{}, usageErrorf("--dim %d out of range [1, %d]", f.dim, secagg.MaxDim)
	}
	if !(f.dropout >= 0 && f.dropout < 1) {
		return secagg.BenchConfig{}, usageErrorf("--dropout %v not in [0, 1)", f.dropout)
	}
	maxDropout := f.maxDropout
	if maxDropout < 0 {
		maxDropout = f.dropout
	}
	if maxDropout < f.dropout {
		return secagg.BenchConfig{}, usageErrorf("--max-dropout %v is below --dropout %v", maxDropout, f.dropout)
	}
	if n := f.clients; f.degree != 0 && kind == secagg.GraphComplete && f.degree != n-1 {
		return secagg.BenchConfig{}, usageErrorf("--degree %d: the complete graph of %d clients has degree %d", f.degree, n, n-1)
	}
	return secagg.BenchConfig{Clients: f.clients, Dim: f.dim, Bits: f.bits, Graph: kind, Degree: f.degree,
		Dropout: f.dropout, DropoutStage: stage, MaxDropout: maxDropout, MaxCorrupt: f.maxCorrupt,
		Malicious: f.malicious, Seed: f.seed}, nil
}

// output is the JSON object of a run: the report with the settings as given on the command line.
func (f *benchSecAggFlags) output(rep *secagg.BenchReport) secaggBenchJSON {
	c := &rep.Config
	out := secaggBenchJSON{Correct: rep.Correct, Clients: c.Clients, Survivors: rep.Survivors,
		Completed: rep.Completed, Dim: c.Dim, Graph: c.Graph.String(), Degree: c.Degree,
		Threshold: c.Threshold, Bits: c.Bits, RingBits: c.RingBits(), Malicious: f.malicious,
		Dropout: f.dropout, DropoutStage: f.stage, Dropped: rep.Dropped, ClientSeconds: rep.ClientSeconds,
		ServerSeconds: rep.ServerSeconds, ClientUploadBytes: rep.ClientUploadBytes,
		PlainUploadBytes: rep.PlainUploadBytes, UploadRatio: rep.UploadRatio,
		Stages: map[string]secaggStageJSON{}, PRG: secaggPRGJSON(rep.PRG)}
	for st, s := range rep.Stages {
		out.Stages[st.String()] = secaggStageJSON(s)
	}
	return out
}

func printBenchSecAgg(w io.Writer, out *secaggBenchJSON) {
	fmt.Fprintf(w, "correct: %v   survivors: %d   completed: %d\n", out.Correct, out.Survivors, out.Completed)
	fmt.Fprintf(w, "client: %.4f s mean CPU (PRG bound %.4f s), upload %.0f B (plain %d B, ×%.3f)\n",
		out.ClientSeconds, out.PRG.ClientBoundSeconds, out.ClientUploadBytes, out.PlainUploadBytes, out.UploadRatio)
	fmt.Fprintf(w, "server: %.4f s (PRG bound %.4f s for %d PRG bytes)\n", out.ServerSeconds, out.PRG.ServerBoundSeconds, out.PRG.ServerBytes)
	for _, name := range []string{"advertise", "share", "masked", "consistency", "unmask"} {
		if s, ok := out.Stages[name]; ok {
			fmt.Fprintf(w, "  %-11s clients %5d  client %.5f s  server %.4f s  up %.0f B  down %.0f B\n",
				name, s.Clients, s.ClientSeconds, s.ServerSeconds, s.ClientUploadBytes, s.ClientDownloadBytes)
		}
	}
}
