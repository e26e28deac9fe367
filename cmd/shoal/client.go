package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"shoal/data"
	"shoal/fl"
	"shoal/nn"
	"shoal/pki"
	"shoal/securesum"
	"shoal/transport/grpctransport"
)

func init() {
	register(command{words: "client", summary: "train on local data for a shoal server (gRPC, mutual TLS)", run: runClient})
}

type clientOptions struct {
	Server, ServerName, Certs, Name string
	Insecure                        bool
	data                            dataOptions // shared with simulate and server
	Model                           string
	PartitionIndex                  int
	MaxBackoff                      time.Duration
	LogLevel                        string
	FaultExitAt                     string
	Replicas                        int
	Policy                          fl.ClientPolicy // what this client requires, whatever the server says
	HECommittee                     string          // threshold HE: the certified names it accepts on the committee
	DDPNoise                        float64         // distributed DP: the least noise multiplier it requires
	DDPMaxShares                    int             // distributed DP: the most shares its noise may be split in
	trainer                         trainerOptions  // --trainer: bring your own model
}

// trustedCommittee is --he-trusted-committee as a list (nil: any certified members).
func (o clientOptions) trustedCommittee() []string {
	if o.HECommittee == "" {
		return nil
	}
	return strings.Split(o.HECommittee, ",")
}

func clientFlags(o *clientOptions, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("shoal client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", "", "TOML file of flag values (keys are flag names, e.g. the policy); flags given on the command line win")
	fs.StringVar(&o.Server, "server", "127.0.0.1:7443", "server address host:port, or a comma-separated list (a tier's edges: any of them, another after a failure)")
	fs.StringVar(&o.ServerName, "server-name", "", "name in the server's certificate, for every server of a list (default: the host of each --server address)")
	fs.StringVar(&o.Certs, "certs", "", "certificate directory holding ca.pem and clients/NAME.pem (mutual TLS)")
	fs.StringVar(&o.Name, "name", "", "this client's name (its certificate's)")
	fs.BoolVar(&o.Insecure, "insecure", false, "connect in plaintext, identified only by --name (testing only)")
	o.data.register(fs, 0, "demo: number of shards the dataset is split into",
		"seed of the partition and of local shuffles (the server's, for a run that matches simulate); 0: random shuffles")
	fs.Lookup("test-fraction").Usage = "fraction of the local data kept for local evaluation (CSV)"
	fs.Lookup("partition").Usage = "demo: partition of a built-in dataset: " + strings.Join(data.PartitionKinds(), ", ")
	fs.StringVar(&o.Model, "model", "2nn", "model: "+strings.Join(nn.Names(), ", ")+" (the server's)")
	fs.IntVar(&o.PartitionIndex, "partition-index", -1, "demo: take shard i (0-based) of --clients as local data")
	fs.DurationVar(&o.MaxBackoff, "max-backoff", 30*time.Second, "longest wait between reconnection attempts")
	fs.StringVar(&o.LogLevel, "log-level", "info", "log level on stderr: debug, info, warn, error")
	fs.IntVar(&o.Replicas, "replicas", 1, "load testing: run this many clients in one process, named NAME-i, on shards --partition-index+i")
	p := &o.Policy
	fs.StringVar(&p.SecureSum, "require-secure-sum", "", "policy: refuse a run without this secure sum ("+strings.Join(securesum.Names(), ", ")+", or any)")
	fs.IntVar(&p.MinCohort, "min-cohort", 0, "policy: refuse a secure-sum round among fewer clients (HE: as a committee member, decrypt only sums of at least this many uploads)")
	fs.IntVar(&p.MinThreshold, "min-threshold", 0, "policy: refuse a secure sum whose threshold is lower (SecAgg: shares to reconstruct; HE: committee members to decrypt)")
	fs.StringVar(&o.HECommittee, "he-trusted-committee", "", "policy: threshold HE: comma-separated certificate names the client accepts as the decryption committee (default: any certified members)")
	fs.Float64Var(&o.DDPNoise, "require-ddp-noise", 0, "policy: with SecAgg, refuse a round without distributed DP of at least this noise multiplier z")
	fs.IntVar(&o.DDPMaxShares, "require-ddp-max-shares", 0, "policy: distributed DP: refuse a round whose noise is split among more shares than this (0: any)")
	fs.Float64Var(&p.MaxClip, "require-clip", 0, "policy: refuse a task that does not clip the update to at most this L2 norm")
	fs.Float64Var(&p.MinNoiseMultiplier, "require-local-noise", 0, "policy: refuse a task whose local DP noise multiplier is below this (needs --require-clip)")
	o.trainer.register(fs)
	fs.StringVar(&o.FaultExitAt, "fault-exit-at", "", "fault injection for tests: exit abruptly on receiving the task ROUND/fit or ROUND/STAGE (secure-sum stage)")
	return fs
}

func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o clientOptions
	if err := parseWithConfig(clientFlags(&o, stderr), args); err != nil {
		return err
	}
	if err := o.check(); err != nil {
		return err
	}
	logger, err := outputOptions{LogLevel: o.LogLevel}.logger(stderr)
	if err != nil {
		return err
	}
	locals, models, desc, err := clientLocals(o)
	if err != nil {
		return err
	}
	onTask, err := faultInjection(o.FaultExitAt, o.Name, stderr)
	if err != nil {
		return err
	}
	configs := make([]grpctransport.ClientConfig, len(locals))
	for i, local := range locals {
		name := o.Name
		if len(locals) > 1 {
			name = fmt.Sprintf("%s-%d", o.Name, i)
		}
		protocols, err := o.secureSum(name)
		if err != nil {
			return err
		}
		configs[i] = grpctransport.ClientConfig{Server: o.Server, Name: name, Insecure: o.Insecure, Local: local,
			SecureSum: protocols, MaxBackoff: o.MaxBackoff, Logger: logger.With("name", name), OnTask: onTask,
			Policy: o.Policy}
		if models != nil { // Shoal's own model: checked against the run's at connect time
			configs[i].Model, configs[i].Adopt = models[i].spec(), models[i].adopt
		}
		if configs[i].TLS, err = o.tls(name); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "shoal client %s: %s; server %s\n", o.Name, desc, o.Server)
	errs := make(chan error, len(configs))
	for _, cfg := range configs {
		go func() {
			if err := grpctransport.RunClient(ctx, cfg); err != nil {
				errs <- fmt.Errorf("client %s: %w", cfg.Name, err)
				return
			}
			errs <- nil
		}()
	}
	var all []error
	for range configs {
		all = append(all, <-errs)
	}
	if err := errors.Join(all...); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "shoal client %s: run complete\n", o.Name)
	return nil
}

func (o clientOptions) check() error {
	switch {
	case o.Name == "":
		return usageErrorf("--name is required")
	case o.Insecure && o.Certs != "":
		return usageErrorf("--insecure and --certs exclude each other")
	case !o.Insecure && o.Certs == "":
		return usageErrorf("--certs DIR is required (mutual TLS); plaintext only with an explicit --insecure")
	case o.Replicas < 1 || o.Replicas > 100_000:
		return usageErrorf("--replicas must be in [1, 100000], got %d", o.Replicas)
	case o.Policy.SecureSum != "" && o.Policy.SecureSum != "any" && !slices.Contains(securesum.Names(), o.Policy.SecureSum):
		return usageErrorf("--require-secure-sum %q: valid: any, %s", o.Policy.SecureSum, strings.Join(securesum.Names(), ", "))
	case o.Policy.MinNoiseMultiplier > 0 && o.Policy.MaxClip == 0:
		return usageErrorf("--require-local-noise needs --require-clip (local noise is calibrated to the clip)")
	case (o.Policy.MinCohort > 0 || o.Policy.MinThreshold > 0) && o.Policy.SecureSum == "":
		return usageErrorf("--min-cohort and --min-threshold need --require-secure-sum")
	}
	if err := o.Policy.Validate(); err != nil {
		return usageErrorf("privacy policy: %v", err)
	}
	return nil
}

// secureSum builds client name's half of whatever secure sum a run announces, with the
// client's own identity and trust root (its certificate and the CA's, never the server's) and
// its own requirements.
func (o clientOptions) secureSum(name string) (func(string, []byte) (fl.SecureSum, error), error) {
	var local securesum.Local
	var err error
	if o.Insecure {
		local, err = securesum.InsecureClient(name)
	} else {
		local, err = securesum.LoadClient(o.Certs, name)
	}
	if err != nil {
		return nil, fmt.Errorf("identity for threshold HE: %w", err)
	}
	local.MinContributors, local.MinThreshold = o.Policy.MinCohort, o.Policy.MinThreshold
	local.TrustedCommittee = o.trustedCommittee()
	if o.DDPNoise > 0 || o.DDPMaxShares > 0 {
		local.DDP = &securesum.DDPPolicy{MinNoiseMultiplier: o.DDPNoise, MaxShares: o.DDPMaxShares}
	}
	return securesum.FromWireLocal(local), nil
}

// tls is client name's mutual-TLS configuration (nil with --insecure).
func (o clientOptions) tls(name string) (cfg *tls.Config, err error) {
	if o.Insecure {
		return nil, nil
	}
	host, list := o.ServerName, strings.Contains(o.Server, ",")
	if host == "" && !list {
		if host, _, err = net.SplitHostPort(o.Server); err != nil {
			return nil, usageErrorf("--server %q: %v", o.Server, err)
		}
	}
	if cfg, err = pki.ClientTLSConfig(o.Certs, name, host); err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	if host == "" && list {
		cfg.ServerName = "" // a list (edges): each verified against its own host by the transport
	}
	return cfg, nil
}

// faultInjection parses --fault-exit-at ROUND/fit or ROUND/STAGE into a task hook that exits
// the process abruptly there (tests of crashes mid-round).
func faultInjection(spec, name string, stderr io.Writer) (func(kind string, round, stage int), error) {
	if spec == "" {
		return nil, nil
	}
	var round int
	var at string
	if _, err := fmt.Sscanf(strings.Replace(spec, "/", " ", 1), "%d %s", &round, &at); err != nil {
		return nil, usageErrorf("--fault-exit-at %q: want ROUND/fit or ROUND/STAGE", spec)
	}
	return func(kind string, r, stage int) {
		if r == round && (kind == "fit" && at == "fit" || kind == "exchange" && at == fmt.Sprint(stage)) {
			fmt.Fprintf(stderr, "shoal client %s: fault injection: exiting at round %d %s\n", name, r, at)
			os.Exit(3)
		}
	}, nil
}

// localData is one replica's training and evaluation examples.
type localData struct {
	train, test *data.Dataset
	trainIdx    []int
	testIdx     []int // nil: no local evaluation data
}

// loadLocal loads the client's local data and returns, per replica, the trainer factory the
// runtime calls per task. Local shuffles follow trainer.ShuffleRand: with --seed exactly as the
// simulator's virtual client of the same id, so a network run can reproduce a simulation.
func loadLocal(o clientOptions) ([]func(int, fl.ClientID) (fl.Client, error), string, error) {
	locals, _, desc, err := clientLocals(o)
	return locals, desc, err
}

// loadLocalModels loads each replica's local data and model (localModel: it adopts the
// server's model and class list at connect time).
func loadLocalModels(o clientOptions) ([]*localModel, string, error) {
	locals, err := o.localData()
	if err != nil {
		return nil, "", err
	}
	models := make([]*localModel, len(locals))
	var desc string
	for i, l := range locals {
		x, y := l.train.Gather(l.trainIdx, nil, nil)
		if len(y) == 0 {
			return nil, "", errors.New("local data has no training examples")
		}
		var tx []float32
		var ty []int32
		if l.testIdx != nil {
			tx, ty = l.test.Gather(l.testIdx, nil, nil)
		}
		if models[i], err = newLocalModel(o.Model, o.data.Seed, l.train, x, y, tx, ty); err != nil {
			return nil, "", err
		}
		if i == 0 {
			desc = fmt.Sprintf("%s on %d local %s examples (%d for evaluation)", o.Model, len(y), o.data.Dataset, len(ty))
		}
	}
	if len(locals) > 1 {
		desc = fmt.Sprintf("%d replicas, the first: %s", len(locals), desc)
	}
	return models, desc, nil
}

// localData is the demo shard(s) of a built-in federation (--partition-index), or the whole
// dataset (a CSV file of the client's own, or all of MNIST).
func (o clientOptions) localData() ([]localData, error) {
	d := o.data
	if o.PartitionIndex < 0 {
		if o.Replicas > 1 {
			return nil, usageErrorf("--replicas needs --partition-index: each replica takes its own shard")
		}
		if d.Dataset == "synthetic" {
			return nil, usageErrorf("--dataset synthetic is generated for a federation: give --clients and --partition-index")
		}
		fed, err := d.load(false)
		if err != nil {
			return nil, err
		}
		return []localData{{train: fed.Train, test: fed.Test, trainIdx: seq(fed.Train.Len()), testIdx: seq(fed.Test.Len())}}, nil
	}
	if last := o.PartitionIndex + o.Replicas - 1; d.Clients < 1 || last >= d.Clients {
		return nil, usageErrorf("--partition-index %d (and --replicas %d) needs --clients > %d", o.PartitionIndex, o.Replicas, last)
	}
	if d.dataSeed() == 0 {
		return nil, usageErrorf("--partition-index needs the run's --data-seed (or --seed), so that clients take disjoint shards of the same data")
	}
	fed, err := d.federate(true) // the test set is split too, for local evaluation
	if err != nil {
		return nil, err
	}
	out := make([]localData, o.Replicas)
	for i := range out {
		k := o.PartitionIndex + i
		out[i] = localData{train: fed.Train, test: fed.Test, trainIdx: fed.Clients[k]}
		if k < len(fed.TestClients) {
			out[i].testIdx = fed.TestClients[k]
		}
	}
	return out, nil
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}
