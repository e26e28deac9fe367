package main

import (
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"shoal/data"
	"shoal/fl"
	"shoal/securesum"
)

// secOptions are the privacy flags shared by simulate (and the server): secure sum and DP.
type secOptions struct {
	SecureSum       string
	SecAggBits      int
	SecAggClipRange float64
	MaxDropout      float64
	MaxCorrupt      float64
	SecAggDegree    int
	StageDropout    float64
	DropoutStage    string
	StageTimeout    time.Duration
}

func addSecurityFlags(fs *flag.FlagSet, s *secOptions) {
	fs.StringVar(&s.SecureSum, "secure-sum", "none", "secure aggregation: none, secagg (Bonawitz et al. 2017), secaggplus (Bell et al. 2020)")
	fs.IntVar(&s.SecAggBits, "secagg-bits", 16, "SecAgg: quantisation bits per entry")
	fs.Float64Var(&s.SecAggClipRange, "secagg-clip-range", 0.5, "SecAgg: entries of the (weight-scaled) update are clipped to ±this")
	fs.Float64Var(&s.MaxDropout, "max-dropout", 0.1, "SecAgg: fraction of the cohort that may drop out mid-protocol (chooses degree and threshold)")
	fs.Float64Var(&s.MaxCorrupt, "max-corrupt", 0.1, "SecAgg: fraction of clients that may collude with the server")
	fs.IntVar(&s.SecAggDegree, "secagg-degree", 0, "SecAgg+: force the graph degree (0: planned)")
	fs.Float64Var(&s.StageDropout, "stage-dropout", 0, "probability that a client in the secure-sum protocol drops at --dropout-stage")
	fs.StringVar(&s.DropoutStage, "dropout-stage", "masked", "protocol stage of --stage-dropout (secagg: advertise, share, masked, unmask)")
	fs.DurationVar(&s.StageTimeout, "stage-timeout", 0, "deadline of each secure-sum stage (0: none)")
}

// buildSecureSum returns the configured protocol (nil for none) and the index of the dropout
// stage. maxWeight is the largest client weight; seed, when non-zero, makes the protocol's
// randomness reproducible (simulation with --seed only).
func buildSecureSum(s secOptions, maxWeight float64, seed uint64) (fl.SecureSum, int, error) {
	var proto fl.SecureSum
	switch s.SecureSum {
	case "none", "":
		if s.StageDropout > 0 {
			return nil, 0, usageErrorf("--stage-dropout needs a --secure-sum protocol")
		}
		return nil, 0, nil
	case "secagg", "secaggplus":
		o := securesum.SecAggOptions{Plus: s.SecureSum == "secaggplus", Bits: s.SecAggBits, ClipRange: s.SecAggClipRange,
			MaxWeight: maxWeight, MaxDropout: s.MaxDropout, MaxCorrupt: s.MaxCorrupt, Degree: s.SecAggDegree}
		if seed != 0 {
			o.Rand = seededReaders(seed)
		}
		p, err := securesum.NewSecAgg(o)
		if err != nil {
			return nil, 0, usageErrorf("%v", err)
		}
		proto = p
	default:
		return nil, 0, usageErrorf("unknown --secure-sum %q (valid: none, secagg, secaggplus)", s.SecureSum)
	}
	stage := slices.Index(proto.Stages(), s.DropoutStage)
	if stage < 0 {
		return nil, 0, usageErrorf("--dropout-stage %q: %s has stages %s", s.DropoutStage, proto.Name(), strings.Join(proto.Stages(), ", "))
	}
	if s.StageDropout < 0 || s.StageDropout >= 1 {
		return nil, 0, usageErrorf("--stage-dropout must be in [0, 1), got %v", s.StageDropout)
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

// maxClientWeight is the largest number of training examples any client holds.
func maxClientWeight(fed *data.Federated) float64 {
	m := 1
	for _, c := range fed.Clients {
		m = max(m, len(c))
	}
	return float64(m)
}

// describeSecurity is the one-line threat model of a run for the progress header.
func describeSecurity(proto fl.SecureSum) string {
	if proto == nil {
		return "plain federated averaging (the server sees every update)"
	}
	return fmt.Sprintf("secure sum %s", proto.Name())
}
