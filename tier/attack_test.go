package tier

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"shoal/fl"
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
			e := testsupport.Engine(t, p.coord, 1)
			e.SecureSum = &Grouped{Inner: p.inner, Coord: p.coord}
			e.Config.StageTimeout = 20 * time.Second
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
