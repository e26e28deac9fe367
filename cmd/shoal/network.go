package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"shoal/fl"
	"shoal/pki"
	"shoal/securesum"
	"shoal/transport/grpctransport"
)

// serverNetwork is the server's network side: the gRPC transport serving clients, its listener
// and the optional Prometheus endpoint.
type serverNetwork struct {
	srv     *grpctransport.Server
	metrics *grpctransport.Metrics
	addr    net.Addr
	// metricsAddr is where --metrics-listen serves (nil: not serving).
	metricsAddr net.Addr
	mode        string // "mutual TLS" or "INSECURE plaintext"
	serve       chan error
	closers     []func()
	// rounds and abandoned count this process's rounds; lastAbandoned is why the last
	// abandoned round was.
	rounds, abandoned int
	lastAbandoned     string
}

// startNetwork serves the Federation service on --listen and makes it the engine's transport
// (with over-selection).
func startNetwork(ctx context.Context, o serverOptions, plan *runPlan, run *serverRun, logger *slog.Logger, lis net.Listener) (*serverNetwork, error) {
	n, err := newNetwork(ctx, o, plan, run, logger, lis)
	if err != nil {
		lis.Close()
	}
	return n, err
}

func newNetwork(ctx context.Context, o serverOptions, plan *runPlan, run *serverRun, logger *slog.Logger, lis net.Listener) (*serverNetwork, error) {
	engine := plan.engine
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := grpctransport.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	cfg, tlsCfg, err := transportConfig(o, run, logger)
	if err != nil {
		return nil, err
	}
	cfg.Metrics = metrics
	if plan.trainers == nil { // Shoal's own model: clients training another are refused at connect time
		cfg.Model = &plan.spec
	}
	if engine.SecureSum != nil {
		spec, err := deploymentSecureSum(o, engine)
		if err != nil {
			return nil, err
		}
		cfg.SecureSum = engine.SecureSum.Name()
		if cfg.SecureSumParams, err = spec.Wire(); err != nil {
			return nil, err
		}
	}
	srv, err := grpctransport.NewServer(cfg)
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	engine.Transport = srv
	engine.Config.RoundTimeout = o.FitTimeout
	if engine.Sampler, err = srv.OverSelect(engine.Sampler, o.OverSelect); err != nil {
		return nil, usageErrorf("--over-select: %v", err)
	}
	n := &serverNetwork{srv: srv, metrics: metrics, addr: lis.Addr(), mode: "mutual TLS", serve: make(chan error, 1)}
	if o.Insecure {
		n.mode = "INSECURE plaintext"
	}
	var creds []grpc.ServerOption
	if tlsCfg != nil { // refused handshakes are logged and counted with their reason
		creds = append(creds, grpc.Creds(srv.ObserveHandshakes(credentials.NewTLS(tlsCfg), pki.RefusalReason, pki.PresentedCertificate)))
	}
	go func() { n.serve <- srv.Serve(metrics.CountingListener(lis), creds...) }()
	n.closers = append(n.closers, func() { srv.Close(false, "server stopped", 5*time.Second) })
	if o.MetricsListen != "" {
		if err := n.serveMetrics(o.MetricsListen, reg); err != nil {
			n.close()
			return nil, err
		}
	}
	return n, nil
}

// deploymentSecureSum rebuilds the run's secure sum for a deployment and returns the spec the
// server announces: a fresh run id that every SecAgg signature and key binds (a client refuses
// a setup of another run), and for threshold HE the server's trust root (the CA certificate;
// it signs nothing and holds no identity of its own).
func deploymentSecureSum(o serverOptions, engine *fl.Engine) (securesum.Spec, error) {
	spec := o.secOptions.withDDPDefaults(o.expectedCohort()).secureSpec()
	spec.RunID = make([]byte, 16)
	_, _ = rand.Read(spec.RunID) // crypto/rand never fails short
	var err error
	if o.SecureSum != "he" {
		engine.SecureSum, err = securesum.New(o.SecureSum, spec)
		linkDDPClip(engine)
		return spec, err
	}
	local, err := heServerLocal(o.Insecure, o.Certs)
	if err != nil {
		return spec, err
	}
	if engine.SecureSum, err = securesum.NewHEFromSpec(spec, local); err != nil {
		return spec, usageErrorf("%v", err)
	}
	return spec, nil
}

// transportConfig is the gRPC transport's configuration: identity (mutual TLS or, explicitly,
// none: a nil TLS configuration), the client registry of the store, chunking and heartbeats.
func transportConfig(o serverOptions, run *serverRun, logger *slog.Logger) (grpctransport.ServerConfig, *tls.Config, error) {
	cfg := grpctransport.ServerConfig{RunID: "local-" + randomHex(6), ChunkSize: o.ChunkSize, Heartbeat: o.Heartbeat, Logger: logger}
	if run.st != nil {
		cfg.RunID = fmt.Sprintf("run-%d", run.id)
		// The store's client registry records who took part, with the certificate serial.
		cfg.Admit = func(ctx context.Context, name string) error {
			if err := run.st.RegisterClient(name, certSerial(ctx)); err != nil {
				return fmt.Errorf("client registry: %w", err)
			}
			return nil
		}
	}
	if o.Insecure {
		cfg.Authenticate = grpctransport.InsecureAuthenticator()
		logger.Warn("serving plaintext without client authentication (--insecure)")
		return cfg, nil, nil
	}
	// One revocation list for the handshake and for the live sessions, which the transport
	// re-checks every heartbeat: revoking a connected client closes its session. A missing or
	// unreadable list refuses every client, unless --allow-missing-crl (missing only).
	rev, err := pki.OpenRevocations(o.Certs, pki.RevocationOptions{AllowMissing: o.AllowMissingCRL})
	if errors.Is(err, pki.ErrNoRevocationList) {
		err = fmt.Errorf("%w; --allow-missing-crl runs without one, accepting every certificate of the CA", err)
	}
	if err != nil {
		return cfg, nil, fmt.Errorf("certificates: %w", err)
	}
	if o.AllowMissingCRL {
		logger.Warn("--allow-missing-crl: while the revocation list is missing, every certificate of the CA is accepted, and deleting the list un-revokes every client", "list", rev.Path())
	}
	// A revoked client completes its handshake and is refused at its Hello, with
	// PermissionDenied "certificate revoked", so that it can say why: the transport checks every
	// session against rev (cfg.Revocation) before anything is served on it.
	tlsCfg, err := pki.ServerTLSConfigFor(o.Certs, rev, pki.ServerTLSOptions{DeferRevoked: true})
	if err != nil {
		return cfg, nil, fmt.Errorf("certificates: %w", err)
	}
	cfg.Authenticate = grpctransport.TLSAuthenticator(pki.PeerName)
	cfg.Revocation = grpctransport.TLSRevocation(rev)
	return cfg, tlsCfg, nil
}

// certSerial is the serial of the client certificate of the stream ctx belongs to ("" if none).
func certSerial(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			if _, s, err := pki.PeerIdentity(info.State); err == nil {
				return s
			}
		}
	}
	return ""
}

func (n *serverNetwork) serveMetrics(addr string, reg *prometheus.Registry) error {
	ml, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	n.metricsAddr = ml.Addr()
	go func() { _ = hs.Serve(ml) }()
	n.closers = append(n.closers, func() { hs.Close() })
	return nil
}

// hook wires the engine's run to the deployment: wait for clients before the setup and each
// round, commit each round to the store before it is reported, report it.
func (n *serverNetwork) hook(e *fl.Engine, o serverOptions, run *serverRun, stderr io.Writer) {
	n.metrics.SetPlan(o.Rounds, o.MaxEpsilon)
	if len(run.history) > 0 {
		n.metrics.SetLastRound(run.history[len(run.history)-1])
	}
	first := true
	e.BeforeRound = func(ctx context.Context, round int) error {
		need := max(o.MinResults, 1)
		if first { // the setup or the first round of this process waits for --wait-clients
			need, first = max(need, o.WaitFor), round == 0
		}
		return n.waitClients(ctx, need, o.WaitTimeout, stderr)
	}
	e.OnSetup = func() { fmt.Fprintf(stderr, "secure-sum setup (%s) done\n", e.SecureSum.Name()) }
	e.Commit = run.commit
	e.OnRound = func(rep fl.RoundReport) {
		printRound(stderr, rep, o.Rounds)
		n.metrics.ObserveRound(rep)
		n.rounds++
		if rep.Abandoned != "" {
			n.abandoned, n.lastAbandoned = n.abandoned+1, rep.Abandoned
		}
	}
}

func (n *serverNetwork) waitClients(ctx context.Context, want int, timeout time.Duration, stderr io.Writer) error {
	if len(n.srv.Connected()) >= want {
		return nil
	}
	fmt.Fprintf(stderr, "waiting for %d clients (%d connected)\n", want, len(n.srv.Connected()))
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return n.srv.WaitForClients(ctx, want)
}

// errAllAbandoned is the server's error when every round it ran was abandoned: the model it
// writes is the initial one.
var errAllAbandoned = errors.New("every round was abandoned: the model is untrained")

// finish tells the clients the run is complete (when it is) and returns the run's error, the
// serving error if the run itself succeeded, or errAllAbandoned with the last reason.
func (n *serverNetwork) finish(runErr error) error {
	if runErr == nil {
		n.srv.Close(true, "run complete", 5*time.Second)
		if n.rounds > 0 && n.abandoned == n.rounds {
			runErr = fmt.Errorf("%w (%d of %d rounds; the last: %s)", errAllAbandoned, n.abandoned, n.rounds, n.lastAbandoned)
		}
	}
	select {
	case err := <-n.serve:
		if err != nil && runErr == nil {
			return err
		}
	default:
	}
	return runErr
}

// linger keeps the metrics endpoint up for d after the run (until ctx is done), so that a
// scrape after the last round sees the final values.
func (n *serverNetwork) linger(ctx context.Context, d time.Duration, stderr io.Writer) {
	if d <= 0 || n.metricsAddr == nil {
		return
	}
	fmt.Fprintf(stderr, "metrics stay up on %s for %v (--linger)\n", n.metricsAddr, d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func (n *serverNetwork) close() {
	for i := len(n.closers) - 1; i >= 0; i-- {
		n.closers[i]()
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
