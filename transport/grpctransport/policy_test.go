package grpctransport

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"shoal/fl"
	"shoal/internal/testsupport"
)

func clearSum(string, []byte) (fl.SecureSum, error) { return testsupport.ClearSum{}, nil }

// policyClient runs a client that requires policy.
func policyClient(t *testing.T, ep endpoint, name string, policy fl.ClientPolicy) *testsupport.Proc {
	t.Helper()
	return testsupport.Go(t, func(ctx context.Context) error {
		return RunClient(ctx, ClientConfig{Server: ep.target, Name: name, Insecure: true, Local: trainers, SecureSum: clearSum,
			MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, DialOptions: ep.dial, Policy: policy})
	})
}

// Attack: a server that announced a secure sum sends a fit task with Secure = false. On the old
// client the update went to the server in the clear. Now the client refuses the task and leaves
// the round: the server learns nothing of its update.
func TestAttackSecureSumDowngradedToClear(t *testing.T) {
	s, ep := tcpServer(t, ServerConfig{SecureSum: "clear"}) // announces a secure sum…
	startClient(t, ep, "a", trainers, clearSum)
	testsupport.WaitClients(t, s, 1)
	e := testsupport.Engine(t, s, 1) // …and runs the round without one
	rep, err := runRound(t, e, 1, make([]float32, 4))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Participants != 0 || rep.Dropped != 1 || rep.Abandoned == "" {
		t.Fatalf("round %+v: the client sent its update in the clear to a run that announced a secure sum", rep)
	}
}

// Attack: a server removes local DP (LocalNoiseStd = 0) or clipping from the tasks of a client
// that requires them. The client refuses each such task; a task that meets its policy is done.
func TestAttackLocalNoiseRemoved(t *testing.T) {
	s, ep := tcpServer(t, ServerConfig{})
	policyClient(t, ep, "a", fl.ClientPolicy{MaxClip: 1, MinNoiseMultiplier: 1})
	testsupport.WaitClients(t, s, 1)
	for _, tc := range []struct {
		name string
		fit  fl.FitConfig
		ok   bool
	}{
		{"no clip, no noise", fl.FitConfig{}, false},
		{"clip but no noise", fl.FitConfig{ClipNorm: 0.5}, false},
		{"noise below z = 1", fl.FitConfig{ClipNorm: 0.5, LocalNoiseStd: 0.5}, false},
		{"clip above the required", fl.FitConfig{ClipNorm: 2, LocalNoiseStd: 4}, false},
		{"as required", fl.FitConfig{ClipNorm: 0.5, LocalNoiseStd: 1}, true},
	} {
		e := testsupport.Engine(t, s, 1)
		fit := tc.fit
		fit.Epochs, fit.BatchSize, fit.LR = 1, 1, 0.1
		e.Config.Fit = fit
		rep, err := runRound(t, e, 1, make([]float32, 4))
		if err != nil {
			t.Fatal(err)
		}
		if got := rep.Participants == 1; got != tc.ok {
			t.Errorf("%s: participants %d, want the task done = %v", tc.name, rep.Participants, tc.ok)
		}
	}
}

// A client that requires a secure sum refuses a run without one, and says why.
func TestClientRefusesRunWithoutRequiredSecureSum(t *testing.T) {
	_, ep := tcpServer(t, ServerConfig{})
	p := policyClient(t, ep, "a", fl.ClientPolicy{SecureSum: "secagg"})
	if err := p.Wait(t, "policy refusal"); !errors.Is(err, fl.ErrPolicy) {
		t.Fatalf("client ended with %v, want a policy refusal", err)
	}
}

// Attack: a server announces a secure sum, so its clients connect, then — on a reconnect, as
// after a restart — announces none and asks for the update in the clear. Each Welcome on its
// own passes the zero policy; together they break "a run that announced a secure sum never
// gets an update in the clear". The client holds the server to its first announcement: it
// refuses the changed one and leaves (fl.ErrPolicy), and no update goes out.
func TestAttackSecureSumDroppedOnReconnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := testsupport.NewNetwork()
		ep := endpoint{target: testsupport.Target("shoal"), dial: nw.DialOptions()}
		s1 := newTestServer(t, ServerConfig{RunID: "r", Heartbeat: memHeartbeat, SecureSum: "clear"})
		testsupport.Serve(t, nw.Listen(t, "shoal"), func(l net.Listener) error { return s1.Serve(l) }, func() { s1.Close(false, "test over", time.Second) })
		rc := startClient(t, ep, "a", trainers, clearSum)
		testsupport.WaitClients(t, s1, 1)
		s1.Close(false, "restart", time.Second)

		s2 := newTestServer(t, ServerConfig{RunID: "r", Heartbeat: memHeartbeat}) // no secure sum now
		testsupport.Serve(t, nw.Listen(t, "shoal"), func(l net.Listener) error { return s2.Serve(l) }, func() { s2.Close(false, "test over", time.Second) })
		// Unfixed, the client joined s2 and its update went out in the clear (Participants 1 of a
		// round without a secure sum).
		select {
		case <-rc.Done():
			if err := rc.Err(); !errors.Is(err, fl.ErrPolicy) {
				t.Fatalf("client ended with %v, want a policy refusal", err)
			}
		case <-time.After(testsupport.Patience):
			t.Fatal("the client stayed with a server that dropped the secure sum it announced")
		}
	})
}

// A resumed server announces the same secure sum with new parameters (a fresh run id): the
// client stays, and rebuilds its protocol half from the new parameters (it would otherwise
// refuse every setup of the new run).
func TestReconnectWithNewParametersRebuildsTheProtocol(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := testsupport.NewNetwork()
		ep := endpoint{target: testsupport.Target("shoal"), dial: nw.DialOptions()}
		var mu sync.Mutex
		var built []string
		factory := func(name string, params []byte) (fl.SecureSum, error) {
			mu.Lock()
			built = append(built, string(params))
			mu.Unlock()
			return testsupport.ClearSum{}, nil
		}
		s1 := newTestServer(t, ServerConfig{RunID: "r", Heartbeat: memHeartbeat, SecureSum: "clear", SecureSumParams: []byte("run-1")})
		testsupport.Serve(t, nw.Listen(t, "shoal"), func(l net.Listener) error { return s1.Serve(l) }, func() { s1.Close(false, "test over", time.Second) })
		rc := startClient(t, ep, "a", trainers, factory)
		testsupport.WaitClients(t, s1, 1)
		s1.Close(false, "restart", time.Second)

		s2 := newTestServer(t, ServerConfig{RunID: "r", Heartbeat: memHeartbeat, SecureSum: "clear", SecureSumParams: []byte("run-2")})
		testsupport.Serve(t, nw.Listen(t, "shoal"), func(l net.Listener) error { return s2.Serve(l) }, func() { s2.Close(false, "test over", time.Second) })
		testsupport.WaitClients(t, s2, 1)
		synctest.Wait() // the client has taken in the welcome
		select {
		case <-rc.Done():
			t.Fatalf("the client left a server that kept its secure sum: %v", rc.Err())
		default:
		}
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(built, []string{"run-1", "run-2"}) {
			t.Fatalf("protocol halves built from %q, want run-1 then run-2", built)
		}
	})
}
