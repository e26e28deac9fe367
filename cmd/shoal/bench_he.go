package main

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"time"

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
	fs := flag.NewFlagSet("shoal bench he", flag.ContinueOnError)
	fs.SetOutput(stderr)
	clients := fs.Int("clients", 100, "number of clients in the round")
	committee := fs.Int("committee", 5, "decryption committee size K (the first K clients)")
	threshold := fs.Int("threshold", 3, "committee members needed to decrypt, T")
	dim := fs.Int("dim", 199210, "update dimension (199210 = the 2NN MNIST model)")
	dropout := fs.Float64("dropout", 0, "fraction of clients that drop out before uploading")
	offline := fs.Int("committee-offline", 0, "committee members unreachable at decryption time")
	seed := fs.Uint64("seed", 1, "seed for the synthetic updates, weights and dropouts (keys always use crypto/rand)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErrorf("%v", err)
	}
	switch {
	case fs.NArg() > 0:
		return usageErrorf("unexpected arguments %q", fs.Args())
	case *clients < 2:
		return usageErrorf("--clients must be at least 2 (one upload is never decrypted)")
	case *committee < 2 || *committee > *clients:
		return usageErrorf("--committee must be in [2, clients=%d]", *clients)
	case *threshold < 2 || *threshold > *committee:
		return usageErrorf("--threshold must be in [2, committee=%d]", *committee)
	case *dim < 1 || *dim > he.MaxDim:
		return usageErrorf("--dim must be in [1, %d]", he.MaxDim)
	case math.IsNaN(*dropout) || *dropout < 0 || *dropout >= 1:
		return usageErrorf("--dropout must be in [0, 1)")
	case *offline < 0 || *offline > *committee:
		return usageErrorf("--committee-offline must be in [0, committee=%d]", *committee)
	}

	params := he.DefaultParams()
	ids := make([]he.PartyID, *clients)
	for i := range ids {
		ids[i] = he.PartyID(i + 1)
	}
	members := ids[:*committee]
	if !*asJSON {
		fmt.Fprintf(stdout, "parameters: %s\n", params)
		fmt.Fprintf(stdout, "key ceremony: %d members, threshold %d …\n", *committee, *threshold)
	}
	t0 := time.Now()
	setup, keys, err := he.RunCeremony(params, members, *threshold, crand.Reader)
	if err != nil {
		return fmt.Errorf("key ceremony: %w", err)
	}
	setupSeconds := time.Since(t0).Seconds()
	if err := ctx.Err(); err != nil {
		return err
	}

	rng := rand.New(rand.NewPCG(*seed, *seed^0x9e3779b97f4a7c15))
	plainSum := make([]float64, *dim)
	plainWeight := 0.0
	values := make([]float32, *dim)
	uploaded := 0
	updates := func(yield func(he.PartyID, he.Update) bool) {
		for _, id := range ids {
			if ctx.Err() != nil {
				return
			}
			if rng.Float64() < *dropout {
				continue // dropped before upload
			}
			w := float64(1 + rng.IntN(600)) // examples held, as in an MNIST partition
			for i := range values {
				values[i] = float32(2*rng.Float64() - 1)
				plainSum[i] += float64(values[i]) * w
			}
			plainWeight += w
			uploaded++
			if !yield(id, he.Update{Values: values, Weight: w}) {
				return
			}
		}
	}
	online := members[*offline:]
	if !*asJSON {
		fmt.Fprintf(stdout, "round: %d clients, dimension %d, dropout %.2f, %d of %d committee members online …\n",
			*clients, *dim, *dropout, len(online), *committee)
	}
	agg, stats, err := he.RunRound(setup, keys, 1, *dim, updates, online)
	if err := ctx.Err(); err != nil {
		return err
	}
	if err != nil {
		return fmt.Errorf("encrypted round: %w", err)
	}

	errSum, errMean := 0.0, 0.0
	mean := agg.Mean()
	for i := range plainSum {
		errSum = math.Max(errSum, math.Abs(agg.Sum[i]-plainSum[i]))
		errMean = math.Max(errMean, math.Abs(mean[i]-plainSum[i]/plainWeight))
	}
	errSum = math.Max(errSum, math.Abs(agg.TotalWeight-plainWeight))
	bound := params.MaxAbsError(*threshold)
	out := heBenchJSON{
		Correct:                   errSum <= bound && len(agg.Contributors) == uploaded,
		MaxAbsError:               errMean,
		MaxAbsErrorSum:            errSum,
		ErrorBoundSum:             bound,
		SecurityBits:              params.SecurityBits(),
		SmudgingSecurityBits:      params.SmudgingSecurityBits(uploaded, *committee, *dim),
		LogN:                      params.LogN(),
		LogQP:                     params.LogQP(),
		LogScale:                  params.LogScale(),
		LogSmudging:               params.LogSmudging(),
		Clients:                   *clients,
		Uploaded:                  uploaded,
		Committee:                 *committee,
		Threshold:                 *threshold,
		CommitteeOffline:          *offline,
		Dim:                       *dim,
		Dropout:                   *dropout,
		Ciphertexts:               params.CiphertextsFor(*dim),
		SetupSeconds:              setupSeconds,
		ClientEncryptSeconds:      stats.EncryptSeconds / float64(max(stats.Uploads, 1)),
		ServerAggregateSeconds:    stats.AggregateSeconds,
		DecryptSeconds:            stats.DecryptSeconds,
		ClientEncryptCPUSeconds:   stats.EncryptCPUSeconds / float64(max(stats.Uploads, 1)),
		ServerAggregateCPUSeconds: stats.AggregateCPUSeconds,
		DecryptCPUSeconds:         stats.DecryptCPUSeconds,
		ClientUploadBytes:         stats.UploadBytes,
		PlainUploadBytes:          4 * *dim,
		Expansion:                 float64(stats.UploadBytes) / float64(4**dim),
		DecryptShareBytes:         stats.ShareBytes,
		DecryptRequestBytes:       stats.RequestBytes,
	}
	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(out); err != nil {
			return err
		}
		if !out.Correct {
			return fmt.Errorf("decrypted aggregate off by %.3g (bound %.3g)", out.MaxAbsErrorSum, out.ErrorBoundSum)
		}
		return nil
	}
	fmt.Fprintf(stdout, "correct                  %v (max |sum error| %.3g, bound %.3g)\n", out.Correct, out.MaxAbsErrorSum, out.ErrorBoundSum)
	fmt.Fprintf(stdout, "max |mean error|         %.3g\n", out.MaxAbsError)
	fmt.Fprintf(stdout, "security                 %d bits (HE Standard), smudging %.1f bits statistical\n", out.SecurityBits, out.SmudgingSecurityBits)
	fmt.Fprintf(stdout, "uploads                  %d of %d clients, %d ciphertexts each\n", out.Uploaded, out.Clients, out.Ciphertexts)
	fmt.Fprintf(stdout, "setup (ceremony)         %.3f s\n", out.SetupSeconds)
	fmt.Fprintf(stdout, "client encrypt (mean)    %.4f s (CPU %.4f s)\n", out.ClientEncryptSeconds, out.ClientEncryptCPUSeconds)
	fmt.Fprintf(stdout, "server aggregate         %.3f s (CPU %.3f s)\n", out.ServerAggregateSeconds, out.ServerAggregateCPUSeconds)
	fmt.Fprintf(stdout, "decrypt                  %.3f s (CPU %.3f s)\n", out.DecryptSeconds, out.DecryptCPUSeconds)
	fmt.Fprintf(stdout, "client upload            %d bytes (plain float32 %d, ×%.2f)\n", out.ClientUploadBytes, out.PlainUploadBytes, out.Expansion)
	if !out.Correct {
		return fmt.Errorf("decrypted aggregate off by %.3g (bound %.3g)", out.MaxAbsErrorSum, out.ErrorBoundSum)
	}
	return nil
}
