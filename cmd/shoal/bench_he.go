package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"

	"shoal/he"
)

func init() {
	register(command{words: "bench he", summary: "run a threshold-HE key ceremony and one encrypted round in-process; report time, bytes and error", run: runBenchHE})
}

type heBenchJSON struct {
	Correct                bool    `json:"correct"`
	MaxAbsError            float64 `json:"max_abs_error"`     // decrypted mean vs plain mean
	MaxAbsErrorSum         float64 `json:"max_abs_error_sum"` // decrypted weighted sum vs plain
	ErrorBoundSum          float64 `json:"error_bound_sum"`   // the parameters' stated bound on the sum
	SecurityBits           int     `json:"security_bits"`
	SmudgingSecurityBits   float64 `json:"smudging_security_bits"`
	LogN                   int     `json:"log_n"`
	LogQP                  float64 `json:"log_qp"`
	LogScale               int     `json:"log_scale"`
	LogSmudging            int     `json:"log_smudging"`
	Clients                int     `json:"clients"`
	Uploaded               int     `json:"uploaded"`
	Committee              int     `json:"committee"`
	Threshold              int     `json:"threshold"`
	CommitteeOffline       int     `json:"committee_offline"`
	Dim                    int     `json:"dim"`
	Dropout                float64 `json:"dropout"`
	Ciphertexts            int     `json:"ciphertexts"`
	SetupSeconds           float64 `json:"setup_seconds"`
	ClientEncryptSeconds   float64 `json:"client_encrypt_seconds"` // mean per uploading client
	ServerAggregateSeconds float64 `json:"server_aggregate_seconds"`
	DecryptSeconds         float64 `json:"decrypt_seconds"` // shares + combine + decode
	// CPU time of the same phases (user+system, all threads): on a busy machine the
	// wall-clock figures above mostly measure the wait for a core.
	ClientEncryptCPUSeconds   float64 `json:"client_encrypt_cpu_seconds"`
	ServerAggregateCPUSeconds float64 `json:"server_aggregate_cpu_seconds"`
	DecryptCPUSeconds         float64 `json:"decrypt_cpu_seconds"`
	ClientUploadBytes         int     `json:"client_upload_bytes"`
	PlainUploadBytes          int     `json:"plain_upload_bytes"`
	Expansion                 float64 `json:"expansion"` // client_upload_bytes / plain_upload_bytes
	DecryptShareBytes         int     `json:"decrypt_share_bytes"`
	DecryptRequestBytes       int     `json:"decrypt_request_bytes"`
}

func runBenchHE(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, asJSON, err := parseBenchHEFlags(args, stderr)
	if err != nil {
		return err
	}
	cfg.Params = he.DefaultParams()
	if !asJSON {
		fmt.Fprintf(stdout, "parameters: %s\n", cfg.Params)
		fmt.Fprintf(stdout, "key ceremony: %d members, threshold %d …\n", cfg.Committee, cfg.Threshold)
	}
	b, err := he.NewBench(ctx, cfg)
	if err != nil {
		return err
	}
	if !asJSON {
		fmt.Fprintf(stdout, "round: %d clients, dimension %d, dropout %.2f, %d of %d committee members online …\n",
			cfg.Clients, cfg.Dim, cfg.Dropout, cfg.Committee-cfg.CommitteeOffline, cfg.Committee)
	}
	rep, err := b.Run(ctx)
	if err != nil {
		return err
	}
	out := benchHEOutput(&cfg, rep)
	if asJSON {
		if err := json.NewEncoder(stdout).Encode(out); err != nil {
			return err
		}
	} else {
		printBenchHE(stdout, &out)
	}
	if !out.Correct {
		return fmt.Errorf("decrypted aggregate off by %.3g (bound %.3g)", out.MaxAbsErrorSum, out.ErrorBoundSum)
	}
	return nil
}

// parseBenchHEFlags parses and checks the flags of bench he, naming the offending one.
func parseBenchHEFlags(args []string, stderr io.Writer) (cfg he.BenchConfig, asJSON bool, err error) {
	fs := flag.NewFlagSet("shoal bench he", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.Clients, "clients", 100, "number of clients in the round")
	fs.IntVar(&cfg.Committee, "committee", 5, "decryption committee size K (the first K clients)")
	fs.IntVar(&cfg.Threshold, "threshold", 3, "committee members needed to decrypt, T")
	fs.IntVar(&cfg.Dim, "dim", 199210, "update dimension (199210 = the 2NN MNIST model)")
	fs.Float64Var(&cfg.Dropout, "dropout", 0, "fraction of clients that drop out before uploading")
	fs.IntVar(&cfg.CommitteeOffline, "committee-offline", 0, "committee members unreachable at decryption time")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed for the synthetic updates, weights and dropouts (keys always use crypto/rand)")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	if err := parseArgs(fs, args); err != nil {
		return cfg, false, err
	}
	switch {
	case cfg.Clients < 2:
		err = usageErrorf("--clients must be at least 2 (one upload is never decrypted)")
	case cfg.Committee < 2 || cfg.Committee > cfg.Clients:
		err = usageErrorf("--committee must be in [2, clients=%d]", cfg.Clients)
	case cfg.Threshold < 2 || cfg.Threshold > cfg.Committee:
		err = usageErrorf("--threshold must be in [2, committee=%d]", cfg.Committee)
	case cfg.Dim < 1 || cfg.Dim > he.MaxDim:
		err = usageErrorf("--dim must be in [1, %d]", he.MaxDim)
	case math.IsNaN(cfg.Dropout) || cfg.Dropout < 0 || cfg.Dropout >= 1:
		err = usageErrorf("--dropout must be in [0, 1)")
	case cfg.CommitteeOffline < 0 || cfg.CommitteeOffline > cfg.Committee:
		err = usageErrorf("--committee-offline must be in [0, committee=%d]", cfg.Committee)
	}
	return cfg, asJSON, err
}

// benchHEOutput is the JSON object of a run: the report with the settings it ran with.
func benchHEOutput(cfg *he.BenchConfig, rep *he.BenchReport) heBenchJSON {
	p := rep.Params
	return heBenchJSON{
		Correct:                   rep.Correct,
		MaxAbsError:               rep.MaxAbsError,
		MaxAbsErrorSum:            rep.MaxAbsErrorSum,
		ErrorBoundSum:             rep.ErrorBoundSum,
		SecurityBits:              p.SecurityBits(),
		SmudgingSecurityBits:      rep.SmudgingSecurityBits,
		LogN:                      p.LogN(),
		LogQP:                     p.LogQP(),
		LogScale:                  p.LogScale(),
		LogSmudging:               p.LogSmudging(),
		Clients:                   cfg.Clients,
		Uploaded:                  rep.Uploaded,
		Committee:                 cfg.Committee,
		Threshold:                 cfg.Threshold,
		CommitteeOffline:          cfg.CommitteeOffline,
		Dim:                       cfg.Dim,
		Dropout:                   cfg.Dropout,
		Ciphertexts:               rep.Ciphertexts,
		SetupSeconds:              rep.SetupSeconds,
		ClientEncryptSeconds:      rep.ClientEncryptSeconds,
		ServerAggregateSeconds:    rep.ServerAggregateSeconds,
		DecryptSeconds:            rep.DecryptSeconds,
		ClientEncryptCPUSeconds:   rep.ClientEncryptCPUSeconds,
		ServerAggregateCPUSeconds: rep.ServerAggregateCPUSeconds,
		DecryptCPUSeconds:         rep.DecryptCPUSeconds,
		ClientUploadBytes:         rep.ClientUploadBytes,
		PlainUploadBytes:          rep.PlainUploadBytes,
		Expansion:                 rep.Expansion,
		DecryptShareBytes:         rep.DecryptShareBytes,
		DecryptRequestBytes:       rep.DecryptRequestBytes,
	}
}

func printBenchHE(w io.Writer, out *heBenchJSON) {
	fmt.Fprintf(w, "correct                  %v (max |sum error| %.3g, bound %.3g)\n", out.Correct, out.MaxAbsErrorSum, out.ErrorBoundSum)
	fmt.Fprintf(w, "max |mean error|         %.3g\n", out.MaxAbsError)
	fmt.Fprintf(w, "security                 %d bits (HE Standard), smudging %.1f bits statistical\n", out.SecurityBits, out.SmudgingSecurityBits)
	fmt.Fprintf(w, "uploads                  %d of %d clients, %d ciphertexts each\n", out.Uploaded, out.Clients, out.Ciphertexts)
	fmt.Fprintf(w, "setup (ceremony)         %.3f s\n", out.SetupSeconds)
	fmt.Fprintf(w, "client encrypt (mean)    %.4f s (CPU %.4f s)\n", out.ClientEncryptSeconds, out.ClientEncryptCPUSeconds)
	fmt.Fprintf(w, "server aggregate         %.3f s (CPU %.3f s)\n", out.ServerAggregateSeconds, out.ServerAggregateCPUSeconds)
	fmt.Fprintf(w, "decrypt                  %.3f s (CPU %.3f s)\n", out.DecryptSeconds, out.DecryptCPUSeconds)
	fmt.Fprintf(w, "client upload            %d bytes (plain float32 %d, ×%.2f)\n", out.ClientUploadBytes, out.PlainUploadBytes, out.Expansion)
}
