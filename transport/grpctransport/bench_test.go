package grpctransport

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"shoal/fl"
	"shoal/internal/cputime"
	"shoal/internal/testsupport"
	"shoal/pki"
)

// BenchmarkModelRoundTrip sends a model of -model-mb out to 10 clients and their
// equally large updates back, one engine round per iteration, and reports the bytes on the
// wire (TLS records and HTTP/2 frames included) against the payload.
//
//	go test -run '^$' -bench ModelRoundTrip -benchtime 3x ./transport/grpc/
func BenchmarkModelRoundTrip(b *testing.B) {
	for _, secure := range []bool{false, true} {
		name := "plaintext"
		if secure {
			name = "mTLS"
		}
		b.Run(fmt.Sprintf("%s/100MB/10clients", name), func(b *testing.B) { benchRoundTrip(b, 25_000_000, 10, secure) })
	}
}

func benchRoundTrip(b *testing.B, dim, clients int, secure bool) {
	metrics, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	cfg := ServerConfig{RunID: "bench", Metrics: metrics, Heartbeat: 5 * time.Second, Authenticate: InsecureAuthenticator()}
	var serverOpts []grpc.ServerOption
	var dir string
	if secure {
		dir = filepath.Join(b.TempDir(), "certs")
		if err := pki.InitCA(dir, []string{"127.0.0.1"}, false); err != nil {
			b.Fatal(err)
		}
		tlsCfg, err := pki.ServerTLSConfig(dir)
		if err != nil {
			b.Fatal(err)
		}
		serverOpts = append(serverOpts, grpc.Creds(credentials.NewTLS(tlsCfg)))
		cfg.Authenticate = TLSAuthenticator(pki.PeerName)
	}
	s, err := NewServer(cfg)
	if err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = s.Serve(metrics.CountingListener(lis), serverOpts...) }()
	defer s.Close(true, "done", time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range clients {
		name := fmt.Sprintf("c%d", i)
		cc := ClientConfig{Server: lis.Addr().String(), Name: name, Insecure: !secure, Local: testsupport.Fixed(testsupport.Echo{})}
		if secure {
			if err := pki.IssueClient(dir, name); err != nil {
				b.Fatal(err)
			}
			var tlsCfg *tls.Config
			if tlsCfg, err = pki.ClientTLSConfig(dir, name, "127.0.0.1"); err != nil {
				b.Fatal(err)
			}
			cc.TLS = tlsCfg
		}
		go func() { _ = RunClient(ctx, cc) }()
	}
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if err := s.WaitForClients(wctx, clients); err != nil {
		b.Fatal(err)
	}
	e := &fl.Engine{Config: fl.EngineConfig{Rounds: 1, MinResults: clients, Fit: fl.FitConfig{Epochs: 1, BatchSize: 1, LR: 1}},
		Strategy: testsupport.FedAvgStrategy(b), Sampler: testsupport.FullSampler(b), Transport: s, Source: testsupport.Source()}
	global := make([]float32, dim)
	for j := range global {
		global[j] = float32(j%1000) * 1e-3
	}
	in0, out0 := metrics.WireBytes()
	cpu0 := cputime.Process()
	b.ResetTimer()
	for i := range b.N {
		rep, err := e.RunRound(context.Background(), i+1, global)
		if err != nil || rep.Participants != clients {
			b.Fatalf("round: %+v %v", rep, err)
		}
	}
	b.StopTimer()
	in, out := metrics.WireBytes()
	payload := float64(4*dim) * float64(clients) * float64(b.N) // each way
	b.ReportMetric(float64(out-out0)/payload, "wire/payload-out")
	b.ReportMetric(float64(in-in0)/payload, "wire/payload-in")
	b.ReportMetric(2*payload/1e6/b.Elapsed().Seconds(), "payload-MB/s")
	// Both ends run in this process, on a shared machine: CPU time per payload GB (server and
	// clients together, including the clients' echo) is steadier than wall time.
	b.ReportMetric((cputime.Process()-cpu0).Seconds()/(2*payload/1e9), "cpu-s/GB")
}
