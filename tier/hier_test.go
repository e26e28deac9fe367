package tier

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"shoal/fl"
	"shoal/internal/testsupport"
	tierv1 "shoal/proto/shoal/tier/v1"
	"shoal/securesum"
	"shoal/transport/grpctransport"
)

// population is two edges of four devices each, in this process over loopback gRPC, with a
// coordinator transport reaching the edges through their Edge service.
type population struct {
	coord  *Coordinator
	inner  fl.SecureSum
	weight map[fl.ClientID]int // device (by its Trainer id) → examples
	// servers are the edges' device servers by edge name (for tests that drive them directly).
	servers map[string]*grpctransport.Server
}

// engine is a one-device-per-client engine whose transport is the coordinator and whose secure
// sum is the groups' master aggregation, with the given stage timeout.
func (p *population) engine(t *testing.T, stageTimeout time.Duration) *fl.Engine {
	e := testsupport.Engine(t, p.coord, 1)
	e.SecureSum = &Grouped{Inner: p.inner, Coord: p.coord}
	e.Config.StageTimeout = stageTimeout
	return e
}

// weights is the devices' example counts, of the devices keep admits (by Trainer id).
func (p *population) weights(keep func(fl.ClientID) bool) map[fl.ClientID]int {
	kept := map[fl.ClientID]int{}
	for id, n := range p.weight {
		if keep(id) {
			kept[id] = n
		}
	}
	return kept
}

func startPopulation(t *testing.T, secure string) *population {
	t.Helper()
	return startPopulationWith(t, secure, populationOptions{})
}

// populationOptions vary startPopulation: the devices' own protection, and an edge that runs
// another sum than its devices were announced.
type populationOptions struct {
	policy  fl.ClientPolicy
	local   securesum.Local                           // the devices' floors on their protocol half
	log     *testsupport.Recorder                     // the devices' log
	edgeSum func(announced fl.SecureSum) fl.SecureSum // the edge's protocol (nil: the announced one)
	// Threshold HE: the committee and threshold announced, the minimum group (default 2), and
	// crash, which makes a device die (its session torn down, no answer) as it receives a
	// task of a kind and stage.
	heCommittee, heThreshold, minGroup int
	crash                              func(device, kind string, stage int) bool
	// device, if set, builds device dev's protocol half from its own Local (nil: the honest one).
	device func(dev string, local securesum.Local) func(name string, params []byte) (fl.SecureSum, error)
}

func startPopulationWith(t *testing.T, secure string, o populationOptions) *population {
	t.Helper()
	var inner fl.SecureSum
	var params []byte
	if secure != "" {
		spec := securesum.Spec{Bits: 20, ClipRange: 1, MaxDropout: 0.1, MaxCorrupt: 0.1, RunID: []byte("0123456789abcdef"),
			Committee: o.heCommittee, Threshold: o.heThreshold}
		var err error
		if params, err = spec.Wire(); err != nil {
			t.Fatal(err)
		}
		if secure == "he" {
			// The edges are deployment servers (a trust root, no identity), as `shoal edge` builds them.
			inner, err = securesum.NewHEFromSpec(spec, securesum.InsecureServer())
		} else {
			inner, err = securesum.FromWire(secure, params)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	p := &population{inner: inner, weight: map[fl.ClientID]int{}, servers: map[string]*grpctransport.Server{}}
	edgeSum := inner
	if o.edgeSum != nil {
		edgeSum = o.edgeSum(inner)
	}
	m := &Members{edges: map[string]EdgeInfo{}, changed: make(chan struct{})}
	for e, name := range []string{"a", "b"} {
		srv, err := grpctransport.NewServer(grpctransport.ServerConfig{RunID: "r", Authenticate: grpctransport.InsecureAuthenticator(),
			Heartbeat: time.Hour, SecureSum: secure, SecureSumParams: params})
		if err != nil {
			t.Fatal(err)
		}
		devices, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		testsupport.Serve(t, devices, func(l net.Listener) error { return srv.Serve(l) }, func() { srv.Close(true, "done", time.Second) })
		p.servers[name] = srv
		edge, err := NewEdge(EdgeConfig{Name: name, Server: srv, SecureSum: edgeSum})
		if err != nil {
			t.Fatal(err)
		}
		internal, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		g := grpc.NewServer()
		tierv1.RegisterEdgeServer(g, edge)
		testsupport.Serve(t, internal, g.Serve, g.Stop)
		m.edges[name] = EdgeInfo{Name: name, Addr: internal.Addr().String()}
		for k := range 4 {
			id, n := fl.ClientID(10*e+k), k+1 // the update depends on this id, whatever the edge calls the device
			p.weight[id] = n
			var log *slog.Logger
			if o.log != nil {
				log = o.log.Logger().With("device", fmt.Sprintf("%s%d", name, k))
			}
			local := o.local
			if secure == "he" { // a device's own identity (self-signed under --insecure), with the test's floors
				l, err := securesum.InsecureClient(fmt.Sprintf("%s%d", name, k))
				if err != nil {
					t.Fatal(err)
				}
				local.Identity, local.Trust = l.Identity, l.Trust
			}
			sum := securesum.FromWireLocal(local)
			if o.device != nil {
				if s := o.device(fmt.Sprintf("%s%d", name, k), local); s != nil {
					sum = s
				}
			}
			testsupport.Go(t, func(ctx context.Context) error {
				ctx, die := context.WithCancel(ctx)
				defer die()
				var onTask func(string, int, int)
				if o.crash != nil {
					dev := fmt.Sprintf("%s%d", name, k)
					onTask = func(kind string, _, stage int) {
						if o.crash(dev, kind, stage) {
							die()
							time.Sleep(200 * time.Millisecond) // the session is gone before the task is answered
						}
					}
				}
				return grpctransport.RunClient(ctx, grpctransport.ClientConfig{Server: devices.Addr().String(), Name: fmt.Sprintf("%s%d", name, k),
					Insecure: true, Local: testsupport.Fixed(&testsupport.Trainer{ID: id, N: n}), SecureSum: sum,
					Policy: o.policy, Logger: log, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, OnTask: onTask})
			})
		}
		testsupport.WaitClients(t, srv, 4)
	}
	minGroup := 2
	if o.minGroup > 0 {
		minGroup = o.minGroup
	}
	coord, err := NewCoordinator(CoordinatorConfig{Term: 1, Members: m, MinGroup: minGroup, StageTimeout: 20 * time.Second, Secure: edgeSum != nil,
		Dial: func(addr string) (*grpc.ClientConn, error) {
			return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(coord.Close)
	p.coord = coord
	return p
}

// The master aggregation of group sums is the FedAvg of every device's update: exact for plain
// groups, within the quantisation of SecAgg+ for secure ones. Each edge forms two groups of two.
func TestHierarchicalRoundEqualsDirectAggregate(t *testing.T) {
	for _, tc := range []struct {
		secure string
		tol    float64
	}{{"", 1e-6}, {"secaggplus", 1e-4}, {"secagg", 1e-4}} {
		t.Run("groups:"+tc.secure, func(t *testing.T) {
			p := startPopulation(t, tc.secure)
			e := p.engine(t, time.Minute)
			global := []float32{0.1, -0.2, 0.3, 0, 0.05, 0.4, -0.1}
			want := testsupport.FedAvg(global, 1, p.weight)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rep, err := e.RunRound(ctx, 1, global)
			if err != nil || rep.Abandoned != "" || rep.Participants != 8 {
				t.Fatalf("round: %+v, %v", rep, err)
			}
			if g := p.coord.Groups(1); len(g) != 4 || g[0].Size != 2 {
				t.Fatalf("groups %+v, want two of two devices per edge", g)
			}
			testsupport.CloseTo(t, global, want, tc.tol)
		})
	}
}

// Over-selection: the round asks ⌈1.6·5⌉ = 8 devices and keeps exactly the first 5 answers; the
// others are cancelled, and the aggregate is the FedAvg of the 5 kept.
func TestGoalEndsTheFitStage(t *testing.T) {
	p := startPopulation(t, "")
	e := testsupport.Engine(t, p.coord, 1)
	e.SecureSum = &Grouped{Coord: p.coord}
	s, err := NewGoalSampler(p.coord, 5, 1.6)
	if err != nil {
		t.Fatal(err)
	}
	e.Sampler = s
	global := make([]float32, 6)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := e.RunRound(ctx, 1, global)
	if err != nil || rep.Sampled != 8 || rep.Participants != 5 || rep.Dropped != 3 {
		t.Fatalf("round: %+v, %v; want 5 of 8 sampled", rep, err)
	}
}
