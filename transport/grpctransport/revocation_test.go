package grpctransport

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"shoal/fl"
	"shoal/internal/testsupport"
	shoalv1 "shoal/proto/shoal/v1"
)

// midFit is a round in which one client blocks in its fit until act (a revocation) ends its
// session.
type midFit struct {
	rep     fl.RoundReport
	err     error
	fitErrs map[fl.ClientID]error
	global  []float32
	// sinceAct is the fake time from act to the end of the round.
	sinceAct time.Duration
}

// roundWithActMidFit runs round 1 over s; started must hear of the blocked client's fit
// start, after which act runs. The round's deadline is an hour: only act can end the fit.
func roundWithActMidFit(t *testing.T, s *Server, started <-chan fl.ClientID, act func()) midFit {
	t.Helper()
	acted := make(chan time.Time, 1)
	go func() {
		<-started
		acted <- time.Now()
		act()
	}()
	tap, fitErrs := testsupport.FitErrors(s)
	e := testsupport.Engine(t, tap, 1)
	e.Config.RoundTimeout = time.Hour
	global := make([]float32, 10)
	rep, err := runRound(t, e, 1, global)
	at := testsupport.Recv(t, acted, "the act")
	t.Logf("round ended %v (fake clock) after the act", time.Since(at))
	return midFit{rep: rep, err: err, fitErrs: fitErrs, global: global, sinceAct: time.Since(at)}
}

// Attack: a client revoked while connected keeps its session (revocation used to be checked
// at the TLS handshake only), and with it its place in every round. Now its session is closed
// at the next heartbeat tick — within one interval of the revocation — its in-flight fit fails
// as dropped, the round goes on with the others, and the client is refused for good.
func TestAttackRevokedClientKeepsSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rev := testsupport.NewRevocations()
		rec := testsupport.NewRecorder(t)
		s, ep := memServer(t, ServerConfig{Revocation: rev, Logger: rec.Logger()})
		started := make(chan fl.ClientID, 4)
		startClient(t, ep, "a", trainers, nil)
		victim := startClient(t, ep, "b", testsupport.Trainers(1, blocked(make(chan struct{})), func(c *testsupport.Trainer) { c.Started = started }), nil)
		startClient(t, ep, "c", trainers, nil)
		testsupport.WaitClients(t, s, 3)

		want := testsupport.FedAvg(make([]float32, 10), 1, map[fl.ClientID]int{0: 1, 2: 1})
		r := roundWithActMidFit(t, s, started, func() { rev.Revoke("b") })
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.sinceAct > memHeartbeat {
			t.Fatalf("the revoked client's session lasted %v after the revocation, want at most one heartbeat (%v)", r.sinceAct, memHeartbeat)
		}
		if r.rep.Participants != 2 || r.rep.Dropped != 1 {
			t.Fatalf("report %+v", r.rep)
		}
		if err := r.fitErrs[1]; !errors.Is(err, fl.ErrDropped) || errors.Is(err, fl.ErrTimeout) {
			t.Fatalf("the revoked client's fit: %v, want dropped as on a disconnect", err)
		}
		testsupport.CloseTo(t, r.global, want, 1e-6)
		if err := victim.Wait(t, "the revoked client's exit"); !errors.Is(err, ErrRefused) {
			t.Fatalf("revoked client: %v, want refused for good", err)
		}
		// Coming back is refused at once, before a welcome: the client never rejoins.
		if err := helloStatus(t, ep, "b"); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("revoked client's new session: %v, want PermissionDenied before any welcome", err)
		}
		if got := fmt.Sprint(s.Connected()); got != "[a c]" {
			t.Fatalf("connected: %s", got)
		}
		rec.WaitFor(t, "of the closed session", testsupport.Message("session closed", "client", "b"))
	})
}

// Attack: deleting or corrupting the revocation list un-revoked everyone. Now an unusable list
// fails closed: every session is closed within one heartbeat (in-flight tasks dropped), new
// ones are refused — as retryable, so the clients keep trying — and when the list is mended
// the clients come back (and a client still listed does not).
func TestAttackBrokenRevocationListFailsClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rev := testsupport.NewRevocations()
		rev.Revoke("mallory")
		rec := testsupport.NewRecorder(t)
		s, ep := memServer(t, ServerConfig{Revocation: rev, Logger: rec.Logger()})
		started := make(chan fl.ClientID, 4)
		block := make(chan struct{})
		a := startClient(t, ep, "a", testsupport.Trainers(1, blocked(block), func(c *testsupport.Trainer) { c.Started = started }), nil)
		b := startClient(t, ep, "b", trainers, nil)
		testsupport.WaitClients(t, s, 2)

		r := roundWithActMidFit(t, s, started, func() { rev.Break(nil) })
		if r.err != nil || r.rep.Participants != 1 || r.rep.Dropped != 1 {
			t.Fatalf("report %+v", r.rep)
		}
		if r.sinceAct > memHeartbeat {
			t.Fatalf("sessions lasted %v after the list broke, want at most one heartbeat (%v)", r.sinceAct, memHeartbeat)
		}
		if err := r.fitErrs[0]; !errors.Is(err, fl.ErrDropped) || errors.Is(err, fl.ErrTimeout) {
			t.Fatalf("in-flight fit: %v, want dropped", err)
		}
		rec.WaitFor(t, "of the unusable list", testsupport.Message("revocation list unusable: closing every session and refusing every client until it is mended"))

		// Refused while broken: a newcomer, a mallory whose revocation the broken list no
		// longer shows, and the old clients retrying. Nobody gives up: it is not their fault.
		mallory := startClient(t, ep, "mallory", trainers, nil)
		startClient(t, ep, "newcomer", trainers, nil)
		time.Sleep(10 * memHeartbeat)
		if got := s.Connected(); len(got) != 0 {
			t.Fatalf("connected while the revocation list is unusable: %v", got)
		}
		for name, p := range map[string]*testsupport.Proc{"a": a, "b": b, "mallory": mallory} {
			select {
			case <-p.Done():
				t.Fatalf("client %s gave up while the list was broken: %v", name, p.Err())
			default:
			}
		}

		close(block)
		rev.Mend()
		testsupport.WaitClients(t, s, 3)
		rec.WaitFor(t, "of the mended list", testsupport.Message("revocation list usable again: accepting clients"))
		if err := mallory.Wait(t, "mallory's exit"); !errors.Is(err, ErrRefused) {
			t.Fatalf("mallory after the list was mended: %v, want refused", err)
		}
		if got := fmt.Sprint(s.Connected()); got != "[a b newcomer]" {
			t.Fatalf("connected after the list was mended: %s", got)
		}
	})
}

// The server reads the revocation list once when it starts serving and then once per
// heartbeat, however many clients connect, reconnect or are refused in between.
func TestRevocationPolledOncePerHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rev := testsupport.NewRevocations()
		rev.Revoke("mallory")
		s, ep := memServer(t, ServerConfig{Revocation: rev})
		startClient(t, ep, "a", trainers, nil)
		testsupport.WaitClients(t, s, 1)
		time.Sleep(memHeartbeat / 2) // off the ticks, so the window holds exactly ten
		before := rev.Refreshes()
		if before < 1 {
			t.Fatal("no refresh when serving started")
		}
		for i := range 5 {
			startClient(t, ep, fmt.Sprintf("c%d", i), trainers, nil)
		}
		startClient(t, ep, "mallory", trainers, nil) // refused, gives up
		for range 3 {
			if err := helloStatus(t, ep, "mallory"); status.Code(err) != codes.PermissionDenied {
				t.Fatalf("revoked hello: %v", err)
			}
		}
		time.Sleep(10 * memHeartbeat)
		if n := rev.Refreshes() - before; n != 10 {
			t.Fatalf("%d refreshes in 10 heartbeats, want 10", n)
		}
		if got := len(s.Connected()); got != 6 {
			t.Fatalf("%d connected, want 6", got)
		}
	})
}

// helloStatus opens a session as name and returns how the server answered the hello: nil
// for a welcome, else the error that ended the stream.
func helloStatus(t *testing.T, ep endpoint, name string) error {
	t.Helper()
	conn, err := grpc.NewClient(ep.target, ep.dial...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := shoalv1.NewFederationClient(conn).Connect(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&shoalv1.ClientMsg{Body: &shoalv1.ClientMsg_Hello{Hello: &shoalv1.Hello{ProtocolVersion: ProtocolVersion, Name: name}}}); err != nil {
		return err
	}
	m, err := stream.Recv()
	if err != nil {
		return err
	}
	if m.GetWelcome() == nil {
		return fmt.Errorf("first message %v, want a welcome", m)
	}
	return nil
}
