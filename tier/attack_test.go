package tier

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"shoal/fl"
	"shoal/he"
	"shoal/internal/testsupport"
	tierv1 "shoal/proto/shoal/tier/v1"
	"shoal/securesum"
	"shoal/transport/grpctransport"
)

// Attack: a coordinator (or its edges) forms SecAgg groups of two, while every device masks
// its update only among at least three (--min-cohort 3) — or with a Shamir threshold of at
// least three (--min-threshold 3). Real device clients behind real edges refuse the group's
// setup: no group sum is formed, the round is abandoned, and each device leaves the run with
// its policy's error.
func TestAttackEdgeGroupBelowDeviceFloor(t *testing.T) {
	for name, local := range map[string]securesum.Local{"min-cohort": {MinContributors: 3}, "min-threshold": {MinThreshold: 3}} {
		t.Run(name, func(t *testing.T) {
			log := testsupport.NewRecorder(t)
			p := startPopulationWith(t, "secagg", populationOptions{policy: fl.ClientPolicy{SecureSum: "secagg"}, local: local, log: log})
			e := p.engine(t, 20*time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rep, err := e.RunRound(ctx, 1, make([]float32, 7))
			if err == nil && rep.Abandoned == "" {
				t.Fatalf("round %+v: the devices masked their updates in groups of two", rep)
			}
			if n := refusedByPolicy(log); n != 8 {
				t.Fatalf("%d of 8 devices refused by their policy", n)
			}
		})
	}
}

// Attack: the edges announce SecAgg to their devices, but run plain group sums (the edge would
// see every update). Devices that require a secure sum refuse the plain fit task: no update
// reaches the edge, and the round has no participant.
func TestAttackEdgeDropsTheSecureSum(t *testing.T) {
	log := testsupport.NewRecorder(t)
	p := startPopulationWith(t, "secagg", populationOptions{policy: fl.ClientPolicy{SecureSum: "secagg"}, log: log,
		edgeSum: func(fl.SecureSum) fl.SecureSum { return nil }})
	e := testsupport.Engine(t, p.coord, 1)
	e.SecureSum = &Grouped{Coord: p.coord}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := e.RunRound(ctx, 1, make([]float32, 7))
	if err == nil && (rep.Abandoned == "" || rep.Participants != 0) {
		t.Fatalf("round %+v: devices sent updates in the clear", rep)
	}
	if n := refusedByPolicy(log); n != 8 {
		t.Fatalf("%d of 8 devices refused by their policy", n)
	}
}

// refusedByPolicy counts the devices that logged a task refused by their privacy policy.
func refusedByPolicy(log *testsupport.Recorder) int {
	devices := map[string]bool{}
	for _, r := range log.Records() {
		if strings.Contains(r.Attrs["err"], fl.ErrPolicy.Error()) {
			devices[r.Attrs["device"]] = true
		}
	}
	return len(devices)
}

// Attack: a deposed coordinator (an older term) that has not noticed its lease lapse keeps
// driving the edges after a newer coordinator reached them: its Roster, Fit and SumGroup are
// refused, and the newer term's are not.
func TestAttackStaleCoordinatorDrivesEdge(t *testing.T) {
	srv, err := grpctransport.NewServer(grpctransport.ServerConfig{RunID: "r", Authenticate: grpctransport.InsecureAuthenticator(), Heartbeat: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEdge(EdgeConfig{Name: "a", Server: srv})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := e.Roster(ctx, &tierv1.RosterRequest{Term: 7}); err != nil {
		t.Fatalf("the newer coordinator's roster: %v", err)
	}
	if _, err := e.Roster(ctx, &tierv1.RosterRequest{Term: 6}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("stale roster: %v", err)
	}
	if _, err := e.SumGroup(ctx, &tierv1.SumGroupRequest{Term: 6, Round: 1, Holders: []int64{0, 1}, Dim: 2}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("stale group sum: %v", err)
	}
	if err := e.Fit(&tierv1.FitRequest{Term: 6, Round: 1}, fitStream{ctx: ctx}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("stale fit: %v", err)
	}
	if _, err := e.Roster(ctx, &tierv1.RosterRequest{Term: 7}); err != nil {
		t.Fatalf("the newer coordinator refused after the stale one: %v", err)
	}
}

// fitStream is the server side of a Fit stream that is refused before anything is sent.
type fitStream struct {
	tierv1.Edge_FitServer
	ctx context.Context
}

func (s fitStream) Context() context.Context { return s.ctx }

// Attack: an edge seats its groups' key ceremonies with threshold 2 while every device decrypts
// only with a threshold of at least 3 (--min-threshold 3). The committee members refuse to join
// the ceremony: no group key exists, no device encrypts, every group is lost and the round is
// abandoned.
func TestAttackEdgeHECommitteeBelowDeviceFloor(t *testing.T) {
	log := testsupport.NewRecorder(t)
	p := startPopulationWith(t, "he", populationOptions{heCommittee: 3, heThreshold: 2, minGroup: 4,
		local: securesum.Local{MinThreshold: 3}, log: log})
	e := p.engine(t, 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := e.RunRound(ctx, 1, make([]float32, 7))
	if err == nil && rep.Abandoned == "" {
		t.Fatalf("round %+v: a group was decrypted under a threshold of 2", rep)
	}
	refused := map[string]bool{}
	for _, r := range log.Records() {
		if strings.Contains(r.Attrs["err"], "ceremony threshold 2 below this client's minimum 3") {
			refused[r.Attrs["device"]] = true
		}
		if strings.Contains(r.Message, "task") && strings.Contains(r.Attrs["stage"], "3") && r.Attrs["kind"] == "exchange" {
			t.Fatalf("device %s was asked to upload: %v", r.Attrs["device"], r)
		}
	}
	if len(refused) != 6 {
		t.Fatalf("%d devices refused the ceremony, want the 3 committee members of each of the 2 groups", len(refused))
	}
}

// Attack: an edge runs a group's key ceremony and upload honestly, then asks the committee to
// approve (and so decrypt) a manifest holding one device's upload only. Every member refuses:
// it decrypts only sums of at least its own minimum of distinct signed uploads (3), whatever the
// edge's configuration. The same devices, in the next round, approve and decrypt the full
// group's sum: the refusal is the manifest's, nothing else.
func TestAttackEdgeHEDecryptsOneUpload(t *testing.T) {
	log := testsupport.NewRecorder(t)
	p := startPopulationWith(t, "he", populationOptions{heCommittee: 3, heThreshold: 2, minGroup: 4, log: log})
	srv := p.servers["a"]
	holders := srv.Roster()
	proto := p.inner.(*securesum.HE)
	for round, attack := range []bool{true, false} {
		global := make([]float32, 7)
		ins := fl.FitIns{Round: round + 1, Params: global, Secure: true, Config: fl.FitConfig{Epochs: 1, BatchSize: 1, LR: 0.1}}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		trained := 0
		if err := srv.Fit(ctx, holders, ins, func(o fl.FitOutcome) {
			if o.Err == nil {
				trained++
			}
		}); err != nil || trained != len(holders) {
			t.Fatalf("fit: %d of %d trained, %v", trained, len(holders), err)
		}
		// The edge's honest group sum (ceremony among 3 of the 4, then the round), relayed by
		// the attacker.
		sum := &keyedSum{proto: proto, holders: holders, gone: map[fl.ClientID]bool{}, log: slog.New(slog.DiscardHandler),
			newRound: func(g *securesum.HE) (fl.SumServer, error) { return g.NewServer(round+1, holders, len(global), 1) }}
		if err := sum.seat(); err != nil {
			t.Fatal(err)
		}
		edge := &manifestCutter{SumServer: sum, cut: attack}
		err := fl.DriveSecureSum(ctx, srv, round+1, edge, 20*time.Second, slog.New(slog.DiscardHandler), nil)
		cancel()
		if !attack {
			res, rerr := sum.Result()
			if err != nil || rerr != nil || res.Count != 4 {
				t.Fatalf("honest round: %+v, %v, %v", res, err, rerr)
			}
			continue
		}
		if err == nil {
			t.Fatal("the edge got a decryption of a one-upload manifest")
		}
		if edge.approvals != 0 || edge.refusals != 3 {
			t.Fatalf("%d approvals and %d refusals of the one-upload manifest, want 0 and 3", edge.approvals, edge.refusals)
		}
	}
	n := 0
	for _, r := range log.Records() {
		if strings.Contains(r.Attrs["err"], "contributions") || strings.Contains(r.Attrs["err"], "contributors") {
			n++
		}
	}
	if n < 3 {
		t.Fatalf("%d devices logged refusing the manifest", n)
	}
}

// manifestCutter is a malicious edge's group sum: it relays an honest keyedSum, but cuts the
// approval request (message kind 5 of securesum's HE adapter) down to its first contribution.
type manifestCutter struct {
	fl.SumServer
	cut                 bool
	approving           bool
	approvals, refusals int
}

func (m *manifestCutter) Next() (map[fl.ClientID][]byte, bool, error) {
	msgs, done, err := m.SumServer.Next()
	m.approving = false
	for id, b := range msgs {
		if len(b) == 0 || b[0] != 5 {
			continue
		}
		m.approving = true
		if !m.cut {
			continue
		}
		req, derr := he.DecodeApprovalRequest(b[1:])
		if derr != nil {
			return nil, false, derr
		}
		req.Contributions = req.Contributions[:1]
		enc, merr := req.MarshalBinary()
		if merr != nil {
			return nil, false, merr
		}
		msgs[id] = append([]byte{5}, enc...)
	}
	return msgs, done, err
}

func (m *manifestCutter) Receive(from fl.ClientID, msg []byte) error {
	if m.approving {
		m.approvals++
	}
	return m.SumServer.Receive(from, msg)
}

func (m *manifestCutter) Drop(id fl.ClientID) {
	if m.approving {
		m.refusals++
	}
	m.SumServer.Drop(id)
}

// Attack (an honest-but-curious edge): one of a SecAgg (SecAgg+) group's four devices dies as
// the masked-input request reaches it, leaving three masked inputs, while the coordinator takes
// only sums of at least four (--min-group 4) and the protocol's threshold is three (two for
// SecAgg+). The edge went on to the unmasking stage, the three survivors sent their shares and
// the edge held the sum of three devices' updates, which the coordinator then refused. The edge
// now abandons the group before asking for any unmasking share when fewer than the request's
// min_group masked inputs arrived: no device of the group is asked to unmask, and the round
// goes on with the other edge's group.
func TestAttackEdgeSecAggUnmasksBelowMinGroup(t *testing.T) {
	for _, protocol := range []string{"secagg", "secaggplus"} {
		t.Run(protocol, func(t *testing.T) {
			var mu sync.Mutex
			crashed := ""
			var unmask []string
			crash := func(dev, kind string, stage int) bool {
				if kind != "exchange" || !strings.HasPrefix(dev, "a") {
					return false
				}
				mu.Lock()
				defer mu.Unlock()
				switch {
				case stage == 2 && crashed == "": // the masked-input request
					crashed = dev
					return true
				case stage == 3: // the unmasking request
					unmask = append(unmask, dev)
				}
				return false
			}
			p := startPopulationWith(t, protocol, populationOptions{minGroup: 4, crash: crash})
			e := p.engine(t, 20*time.Second)
			initial := []float32{0.1, -0.2, 0.3, 0, 0.05, 0.4, -0.1}
			global := slices.Clone(initial)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rep, err := e.RunRound(ctx, 1, global)
			if err != nil || rep.Abandoned != "" || rep.Participants != 4 {
				t.Fatalf("round %+v, %v: want edge b's group alone", rep, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if crashed == "" {
				t.Fatal("no device crashed at the masked-input request")
			}
			if len(unmask) > 0 {
				t.Fatalf("with %s gone, edge a asked %v for unmasking shares of a sum of 3 devices, below the minimum group of 4", crashed, unmask)
			}
			kept := p.weights(func(id fl.ClientID) bool { return id >= 10 }) // edge b's devices
			testsupport.CloseTo(t, global, testsupport.FedAvg(initial, 1, kept), 1e-4)
		})
	}
}
