package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"shoal/fl"
	"shoal/pki"
	tierv1 "shoal/proto/shoal/tier/v1"
	"shoal/securesum"
	"shoal/tier"
	"shoal/transport/grpctransport"
)

func init() {
	register(command{words: "edge", summary: "hold device connections for a population's coordinator (scale-out tier, etcd)", run: runEdge})
	examples["edge"] = []string{
		"shoal edge --etcd http://etcd:2379 --population mnist --name edge-0 --certs certs --listen :7443 --internal-listen :7444 --advertise edge-0.edges:7444",
		"shoal edge --etcd http://127.0.0.1:2379 --population demo --name e1 --insecure --listen 127.0.0.1:7443 --internal-listen 127.0.0.1:7444",
	}
}

// tierOptions are the flags the coordinator and the edges share.
type tierOptions struct {
	Etcd       string
	Population string
	Name       string
	LeaseTTL   time.Duration
}

func (t *tierOptions) register(fs *flag.FlagSet, role string) {
	host, _ := os.Hostname()
	fs.StringVar(&t.Etcd, "etcd", "http://127.0.0.1:2379", "etcd endpoints, comma-separated (election, membership, round metadata)")
	fs.StringVar(&t.Population, "population", "", "the population's name: its keys in etcd are under /shoal/NAME/ (required)")
	fs.StringVar(&t.Name, "name", host, "this "+role+"'s name in etcd (unique in the population)")
	fs.DurationVar(&t.LeaseTTL, "lease-ttl", 10*time.Second, "etcd lease: a dead "+role+" is noticed (and replaced) within this")
}

func (t tierOptions) check() error {
	if err := tier.ValidPopulation(t.Population); err != nil {
		return usageErrorf("--population: %v", err)
	}
	if t.Name == "" || strings.ContainsAny(t.Name, "/ ") {
		return usageErrorf("--name %q: want a name without '/' or spaces", t.Name)
	}
	if t.LeaseTTL < time.Second {
		return usageErrorf("--lease-ttl %v: want ≥ 1s", t.LeaseTTL)
	}
	return nil
}

func (t tierOptions) endpoints() []string { return strings.Split(t.Etcd, ",") }

type edgeOptions struct {
	tierOptions
	Listen, InternalListen, Advertise string
	Certs                             string
	Insecure, AllowMissingCRL         bool
	Coordinators                      string
	Heartbeat                         time.Duration
	ChunkSize                         int
	LogLevel                          string
	FaultExitAt                       int
	PaceSlack                         float64
}

func edgeFlags(o *edgeOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("shoal edge", flag.ContinueOnError)
	o.tierOptions.register(fs, "edge")
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:7443", "address devices connect to (the ordinary client protocol)")
	fs.StringVar(&o.InternalListen, "internal-listen", "127.0.0.1:7444", "address of the Edge service the coordinator calls")
	fs.StringVar(&o.Advertise, "advertise", "", "address the coordinator dials, registered in etcd (default: --internal-listen)")
	fs.StringVar(&o.Certs, "certs", "", "certificate directory from 'shoal certs init' (mutual TLS for devices and the coordinator)")
	fs.BoolVar(&o.Insecure, "insecure", false, "plaintext, names taken on trust (testing only)")
	fs.BoolVar(&o.AllowMissingCRL, "allow-missing-crl", false, "accept every certificate of the CA while --certs has no revoked.txt")
	fs.StringVar(&o.Coordinators, "coordinator-names", "coordinator", "certificate names allowed to call the Edge service, comma-separated")
	fs.DurationVar(&o.Heartbeat, "heartbeat", 5*time.Second, "heartbeat interval with devices; a device silent for three is dropped")
	fs.IntVar(&o.ChunkSize, "chunk-size", grpctransport.DefaultChunkSize, "payload bytes per message to devices")
	fs.StringVar(&o.LogLevel, "log-level", "info", "log level on stderr: debug, info, warn, error")
	fs.Float64Var(&o.PaceSlack, "pace-slack", 0, "pace steering: hold at most this many times the edge's share of a round's demand; turn away others, and send devices away after their round, each told when to come back (0: off)")
	fs.IntVar(&o.FaultExitAt, "fault-exit-at", 0, "fault injection for tests: exit abruptly when the coordinator asks for a group sum of this round (mid-round)")
	return fs
}

func runEdge(ctx context.Context, args []string, _, stderr io.Writer) error {
	o := &edgeOptions{}
	if err := parseWithConfig(edgeFlags(o), args); err != nil {
		return err
	}
	if err := o.check(); err != nil {
		return err
	}
	if o.Insecure == (o.Certs != "") {
		return usageErrorf("give --certs DIR (mutual TLS) or, for testing only, --insecure")
	}
	logger, err := outputOptions{LogLevel: o.LogLevel}.logger(stderr)
	if err != nil {
		return err
	}
	if o.Advertise == "" {
		o.Advertise = o.InternalListen
	}
	cli, err := tier.Dial(ctx, o.endpoints(), logger)
	if err != nil {
		return err
	}
	defer cli.Close()
	keys := tier.Keys{Population: o.Population}
	fmt.Fprintf(stderr, "shoal edge %s: waiting for population %s's run in etcd\n", o.Name, o.Population)
	rec, err := tier.WaitRun(ctx, cli, keys)
	if err != nil {
		return err
	}
	if rec.Complete {
		fmt.Fprintf(stderr, "run %s is complete\n", rec.Name)
		return nil
	}
	return serveEdge(ctx, o, cli, keys, rec, logger, stderr)
}

// serveEdge serves devices and the coordinator until the run completes, changes, or ctx ends.
func serveEdge(ctx context.Context, o *edgeOptions, cli *clientv3.Client, keys tier.Keys, rec *tier.RunRecord, logger *slog.Logger, stderr io.Writer) error {
	var pacer *tier.Pacer
	if o.PaceSlack > 0 {
		pacer = tier.NewPacer(o.PaceSlack)
		pctx, stop := context.WithCancel(ctx)
		defer stop()
		go pacer.Follow(pctx, cli, keys, logger)
	}
	srv, tlsCfg, err := edgeTransport(o, rec, pacer, logger)
	if err != nil {
		return err
	}
	inner, err := edgeSecureSum(o, rec)
	if err != nil {
		return fmt.Errorf("run %s: %w", rec.Name, err)
	}
	edge, err := tier.NewEdge(tier.EdgeConfig{Name: o.Name, Server: srv, SecureSum: inner, Authorize: coordinatorCheck(o),
		OnSumGroup: edgeFault(o, stderr), Pacer: pacer, Logger: logger})
	if err != nil {
		return err
	}
	devices, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	internal, err := net.Listen("tcp", o.InternalListen)
	if err != nil {
		devices.Close()
		return fmt.Errorf("--internal-listen: %w", err)
	}
	var devCreds, intCreds []grpc.ServerOption
	if tlsCfg != nil {
		devCreds = append(devCreds, grpc.Creds(srv.ObserveHandshakes(credentials.NewTLS(tlsCfg), pki.RefusalReason, pki.PresentedCertificate)))
		intCreds = append(intCreds, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	g := grpc.NewServer(append(intCreds, grpc.MaxRecvMsgSize(1<<30), grpc.MaxSendMsgSize(1<<30))...)
	tierv1.RegisterEdgeServer(g, edge)
	errs := make(chan error, 2)
	go func() { errs <- srv.Serve(devices, devCreds...) }()
	go func() { errs <- g.Serve(internal) }()
	defer g.Stop()
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		_ = tier.Register(rctx, cli, keys, tier.EdgeInfo{Name: o.Name, Addr: o.Advertise, Devices: devices.Addr().String()}, o.LeaseTTL, logger)
	}()
	fmt.Fprintf(stderr, "shoal edge %s: run %s (%s), devices on %s, coordinator on %s, registered in population %s\n",
		o.Name, rec.Name, edge.Describe(), devices.Addr(), internal.Addr(), o.Population)
	done, err := watchRunEnd(rctx, cli, keys, rec.Name)
	switch {
	case err == nil && done:
		srv.Close(true, "run complete", 5*time.Second)
		fmt.Fprintf(stderr, "run %s complete\n", rec.Name)
		return nil
	case ctx.Err() != nil:
		srv.Close(false, "edge stopped", 5*time.Second)
		return nil
	}
	srv.Close(false, "edge stopped", 5*time.Second)
	return err
}

// edgeSecureSum is the server half of the run's protocol (nil: plain groups). Under threshold
// HE the edge is a deployment server: it checks uploads and approvals against the CA
// certificate it holds itself, and signs nothing; each group's key ceremony runs among the
// group's devices.
func edgeSecureSum(o *edgeOptions, rec *tier.RunRecord) (fl.SecureSum, error) {
	if rec.SecureSum == "" {
		return nil, nil
	}
	if rec.SecureSum != "he" {
		return securesum.FromWire(rec.SecureSum, rec.SecureSumParams)
	}
	var spec securesum.Spec
	if err := json.Unmarshal(rec.SecureSumParams, &spec); err != nil {
		return nil, fmt.Errorf("parameters of he: %w", err)
	}
	local, err := heServerLocal(o.Insecure, o.Certs)
	if err != nil {
		return nil, err
	}
	return securesum.NewHEFromSpec(spec, local)
}

// heServerLocal is what a threshold-HE server half (`shoal server`, an edge) holds of its own:
// the CA certificate it checks uploads and approvals against, and no identity.
func heServerLocal(insecure bool, certs string) (securesum.Local, error) {
	if insecure {
		return securesum.InsecureServer(), nil
	}
	local, err := securesum.LoadServer(certs)
	if err != nil {
		return local, fmt.Errorf("threshold HE: %w", err)
	}
	return local, nil
}

// edgeTransport is the devices' server, configured exactly as `shoal server`'s transport but
// announcing the population's run.
func edgeTransport(o *edgeOptions, rec *tier.RunRecord, pacer *tier.Pacer, logger *slog.Logger) (*grpctransport.Server, *tls.Config, error) {
	so := serverOptions{Certs: o.Certs, Insecure: o.Insecure, AllowMissingCRL: o.AllowMissingCRL, Heartbeat: o.Heartbeat, ChunkSize: o.ChunkSize}
	cfg, tlsCfg, err := transportConfig(so, &serverRun{}, logger)
	if err != nil {
		return nil, nil, err
	}
	cfg.RunID, cfg.SecureSum, cfg.SecureSumParams, cfg.Model = rec.Name, rec.SecureSum, rec.SecureSumParams, rec.Model
	if pacer != nil {
		cfg.Steer = pacer.Steer
	}
	srv, err := grpctransport.NewServer(cfg)
	if err != nil {
		return nil, nil, usageErrorf("%v", err)
	}
	return srv, tlsCfg, nil
}

// coordinatorCheck admits only the named coordinators to the Edge service (mutual TLS); an
// insecure edge takes anyone (testing only).
func coordinatorCheck(o *edgeOptions) func(ctx context.Context) error {
	if o.Insecure {
		return nil
	}
	names := strings.Split(o.Coordinators, ",")
	return func(ctx context.Context) error {
		p, ok := peer.FromContext(ctx)
		if !ok {
			return errors.New("no peer")
		}
		info, ok := p.AuthInfo.(credentials.TLSInfo)
		if !ok {
			return errors.New("not TLS")
		}
		name, err := pki.PeerName(info.State)
		if err != nil {
			return err
		}
		if !slices.Contains(names, name) {
			return fmt.Errorf("%q is not a coordinator (--coordinator-names)", name)
		}
		return nil
	}
}

// watchRunEnd blocks until the run named name is marked complete (true), replaced by another
// run (an error: this edge announces the old one to devices), or ctx ends.
func watchRunEnd(ctx context.Context, cli *clientv3.Client, keys tier.Keys, name string) (bool, error) {
	for ctx.Err() == nil {
		rec, rev, err := tier.LoadRun(ctx, cli, keys)
		switch {
		case err != nil:
		case rec == nil || rec.Name != name:
			return false, fmt.Errorf("population %s's run changed from %s: restart the edge to serve the new one", keys.Population, name)
		case rec.Complete:
			return true, nil
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		for range cli.Watch(wctx, keys.Run(), clientv3.WithRev(rev+1)) {
			break
		}
		cancel()
	}
	return false, ctx.Err()
}

// edgeFault is --fault-exit-at: the edge dies abruptly in the middle of a round, after its
// devices trained and before their group's sum (a SIGKILL's effect: no goodbye, lease left to
// expire).
func edgeFault(o *edgeOptions, stderr io.Writer) func(round int) {
	if o.FaultExitAt <= 0 {
		return nil
	}
	return func(round int) {
		if round == o.FaultExitAt {
			fmt.Fprintf(stderr, "shoal edge %s: fault injection: exiting in round %d\n", o.Name, round)
			os.Exit(3)
		}
	}
}
