package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"strings"
	"time"

	"shoal/data"
	"shoal/fl"
	"shoal/nn"
	"shoal/pki"
	"shoal/securesum"
	"shoal/trainer"
	"shoal/transport/grpctransport"
)

func init() {
	register(command{words: "client", summary: "train on local data for a shoal server (gRPC, mutual TLS)", run: runClient})
}

type clientOptions struct {
	Server, ServerName, Certs, Name string
	Insecure                        bool
	data                            simOptions // dataset flags, shared with simulate
	PartitionIndex                  int
	MaxBackoff                      time.Duration
	LogLevel                        string
	FaultExitAt                     string
	Replicas                        int
}

func clientFlags(o *clientOptions, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("shoal client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Server, "server", "127.0.0.1:7443", "server address host:port")
	fs.StringVar(&o.ServerName, "server-name", "", "name in the server's certificate (default: the host of --server)")
	fs.StringVar(&o.Certs, "certs", "", "certificate directory holding ca.pem and clients/NAME.pem (mutual TLS)")
	fs.StringVar(&o.Name, "name", "", "this client's name (its certificate's)")
	fs.BoolVar(&o.Insecure, "insecure", false, "connect in plaintext, identified only by --name (testing only)")
	d := &o.data
	fs.StringVar(&d.Dataset, "dataset", "mnist", "dataset: mnist, synthetic or csv")
	fs.StringVar(&d.DataDir, "data-dir", "", "directory of the MNIST IDX files (default: the GoMNIST module's copy)")
	fs.StringVar(&d.DataPath, "data", "", "CSV file of local data for --dataset csv")
	fs.StringVar(&d.LabelColumn, "label-column", "label", "label column of the CSV file")
	fs.Float64Var(&d.TestFraction, "test-fraction", 0.2, "fraction of the local data kept for local evaluation (CSV)")
	fs.Float64Var(&d.SyntheticAlpha, "synthetic-alpha", 1, "α of Synthetic(α, β)")
	fs.Float64Var(&d.SyntheticBeta, "synthetic-beta", 1, "β of Synthetic(α, β)")
	fs.StringVar(&d.Model, "model", "2nn", "model: "+strings.Join(nn.Names(), ", ")+" (the server's)")
	fs.StringVar(&d.Partition, "partition", "iid", "demo: partition of a built-in dataset: "+strings.Join(data.PartitionKinds(), ", "))
	fs.Float64Var(&d.DirichletAlpha, "dirichlet-alpha", 0.5, "demo: concentration α of the dirichlet partition")
	fs.IntVar(&d.Clients, "clients", 0, "demo: number of shards the dataset is split into")
	fs.IntVar(&o.PartitionIndex, "partition-index", -1, "demo: take shard i (0-based) of --clients as local data")
	fs.Uint64Var(&d.Seed, "seed", 0, "seed of the partition and of local shuffles (the server's, for a run that matches simulate); 0: random shuffles")
	fs.DurationVar(&o.MaxBackoff, "max-backoff", 30*time.Second, "longest wait between reconnection attempts")
	fs.StringVar(&o.LogLevel, "log-level", "info", "log level on stderr: debug, info, warn, error")
	fs.IntVar(&o.Replicas, "replicas", 1, "load testing: run this many clients in one process, named NAME-i, on shards --partition-index+i")
	fs.StringVar(&o.FaultExitAt, "fault-exit-at", "", "fault injection for tests: exit abruptly on receiving the task ROUND/fit or ROUND/STAGE (secure-sum stage)")
	return fs
}

func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o clientOptions
	fs := clientFlags(&o, stderr)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usageErrorf("%v", err)
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected arguments %q", fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.LogLevel)); err != nil {
		return usageErrorf("--log-level: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})).With("name", o.Name)
	switch {
	case o.Name == "":
		return usageErrorf("--name is required")
	case o.Insecure && o.Certs != "":
		return usageErrorf("--insecure and --certs exclude each other")
	case !o.Insecure && o.Certs == "":
		return usageErrorf("--certs DIR is required (mutual TLS); plaintext only with an explicit --insecure")
	}
	if o.Replicas < 1 || o.Replicas > 100_000 {
		return usageErrorf("--replicas must be in [1, 100000], got %d", o.Replicas)
	}
	locals, desc, err := loadLocal(o, stderr)
	if err != nil {
		return err
	}
	var onTask func(kind string, round, stage int)
	if o.FaultExitAt != "" {
		var round int
		var at string
		if _, err := fmt.Sscanf(strings.Replace(o.FaultExitAt, "/", " ", 1), "%d %s", &round, &at); err != nil {
			return usageErrorf("--fault-exit-at %q: want ROUND/fit or ROUND/STAGE", o.FaultExitAt)
		}
		onTask = func(kind string, r, stage int) {
			if r == round && (kind == "fit" && at == "fit" || kind == "exchange" && at == fmt.Sprint(stage)) {
				fmt.Fprintf(stderr, "shoal client %s: fault injection: exiting at round %d %s\n", o.Name, r, at)
				os.Exit(3)
			}
		}
	}
	host := o.ServerName
	if !o.Insecure && host == "" {
		if host, _, err = net.SplitHostPort(o.Server); err != nil {
			return usageErrorf("--server %q: %v", o.Server, err)
		}
	}
	configs := make([]grpctransport.ClientConfig, len(locals))
	for i, local := range locals {
		name := o.Name
		if len(locals) > 1 {
			name = fmt.Sprintf("%s-%d", o.Name, i)
		}
		cfg := grpctransport.ClientConfig{Server: o.Server, Name: name, Insecure: o.Insecure, Local: local,
			SecureSum: secureFromSpec, MaxBackoff: o.MaxBackoff, Logger: logger.With("replica", name), OnTask: onTask}
		if !o.Insecure {
			if cfg.TLS, err = pki.ClientTLSConfig(o.Certs, name, host); err != nil {
				return fmt.Errorf("certificates: %w", err)
			}
		}
		configs[i] = cfg
	}
	fmt.Fprintf(stderr, "shoal client %s: %s; server %s\n", o.Name, desc, o.Server)
	errs := make(chan error, len(configs))
	for _, cfg := range configs {
		go func() {
			err := grpctransport.RunClient(ctx, cfg)
			if err != nil {
				err = fmt.Errorf("client %s: %w", cfg.Name, err)
			}
			errs <- err
		}()
	}
	var first error
	for range configs {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return first
	}
	fmt.Fprintf(stderr, "shoal client %s: run complete\n", o.Name)
	return nil
}

// loadLocal loads the client's local data and returns the trainer factory the runtime calls
// per task. With --seed, local shuffles are seeded exactly as the simulator seeds its virtual
// client of the same id, so a network run can reproduce a simulation.
func loadLocal(o clientOptions, stderr io.Writer) ([]func(int, fl.ClientID) (fl.Client, error), string, error) {
	d := o.data
	var train, test *data.Dataset
	var trainIdx, testIdx [][]int // per replica
	switch {
	case o.PartitionIndex >= 0:
		if last := o.PartitionIndex + o.Replicas - 1; d.Clients < 1 || last >= d.Clients {
			return nil, "", usageErrorf("--partition-index %d (and --replicas %d) needs --clients > %d", o.PartitionIndex, o.Replicas, last)
		}
		if d.Seed == 0 && !(d.Dataset == "synthetic") {
			return nil, "", usageErrorf("--partition-index needs the run's --seed, so that clients take disjoint shards")
		}
		d.FederatedEval = true // also split the test set, for local evaluation
		fed, err := loadFederated(d, stderr)
		if err != nil {
			return nil, "", err
		}
		train = fed.Train
		for i := range o.Replicas {
			k := o.PartitionIndex + i
			trainIdx = append(trainIdx, fed.Clients[k])
			if fed.TestClients != nil && k < len(fed.TestClients) {
				test = fed.Test
				testIdx = append(testIdx, fed.TestClients[k])
			}
		}
	case d.Dataset == "csv":
		if d.DataPath == "" {
			return nil, "", usageErrorf("--dataset csv needs --data FILE")
		}
		all, err := data.LoadCSVFile(d.DataPath, d.LabelColumn)
		if err != nil {
			return nil, "", err
		}
		if train, test, err = all.Split(d.TestFraction, d.Seed); err != nil {
			return nil, "", usageErrorf("--test-fraction: %v", err)
		}
	case d.Dataset == "mnist":
		var err error
		if train, test, err = data.LoadMNIST(d.DataDir); err != nil {
			return nil, "", err
		}
	case d.Dataset == "synthetic":
		return nil, "", usageErrorf("--dataset synthetic is generated for a federation: give --clients and --partition-index")
	default:
		return nil, "", usageErrorf("unknown dataset %q (valid: mnist, synthetic, csv)", d.Dataset)
	}
	if o.Replicas > 1 && trainIdx == nil {
		return nil, "", usageErrorf("--replicas needs --partition-index: each replica takes its own shard")
	}
	if trainIdx == nil {
		trainIdx = [][]int{seq(train.Len())}
		if test != nil {
			testIdx = [][]int{seq(test.Len())}
		}
	}
	locals := make([]func(int, fl.ClientID) (fl.Client, error), len(trainIdx))
	var desc string
	for i := range trainIdx {
		x, y := train.Gather(trainIdx[i], nil, nil)
		if len(y) == 0 {
			return nil, "", fmt.Errorf("local data has no training examples")
		}
		var tx []float32
		var ty []int32
		if test != nil && i < len(testIdx) {
			tx, ty = test.Gather(testIdx[i], nil, nil)
		}
		model, err := nn.New(d.Model, nn.Shape{C: train.C, H: train.H, W: train.W}, train.Classes, mrand.New(mrand.NewPCG(1, 2)))
		if err != nil {
			return nil, "", usageErrorf("--model: %v", err)
		}
		seed := d.Seed
		locals[i] = func(round int, id fl.ClientID) (fl.Client, error) {
			var rng *mrand.Rand
			if seed != 0 {
				rng = mrand.New(mrand.NewPCG(seed^0x5eed, uint64(round)<<32|uint64(id))) // as sim seeds client id
			} else {
				var b [16]byte
				_, _ = rand.Read(b[:])
				rng = mrand.New(mrand.NewPCG(binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])))
			}
			return &trainer.Client{Model: model, X: x, Y: y, TestX: tx, TestY: ty, Rand: rng}, nil
		}
		if i == 0 {
			desc = fmt.Sprintf("%s on %d local %s examples (%d for evaluation)", d.Model, len(y), d.Dataset, len(ty))
		}
	}
	if len(locals) > 1 {
		desc = fmt.Sprintf("%d replicas, the first: %s", len(locals), desc)
	}
	return locals, desc, nil
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// secureFromSpec builds the client's copy of the run's secure-sum protocol from what the server
// announced. Its randomness comes from crypto/rand.
func secureFromSpec(name string, params []byte) (fl.SecureSum, error) {
	switch name {
	case "secagg", "secaggplus":
		var s secureSumSpec
		if err := json.Unmarshal(params, &s); err != nil {
			return nil, fmt.Errorf("parameters of %s: %w", name, err)
		}
		return securesum.NewSecAgg(securesum.SecAggOptions{Plus: name == "secaggplus", Bits: s.Bits, ClipRange: s.ClipRange,
			MaxWeight: s.MaxWeight, MaxDropout: s.MaxDropout, MaxCorrupt: s.MaxCorrupt, Degree: s.Degree})
	case "he":
		var s secureSumSpec
		if err := json.Unmarshal(params, &s); err != nil {
			return nil, fmt.Errorf("parameters of %s: %w", name, err)
		}
		// The committee member's key material stays in this process's memory: a restarted
		// client takes part in the next ceremony, not in decrypting under the old keys.
		return securesum.NewHE(securesum.HEOptions{Committee: s.Committee, Threshold: s.Threshold})
	}
	return nil, fmt.Errorf("unknown secure-sum protocol %q", name)
}
