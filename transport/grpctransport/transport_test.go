package grpctransport

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"shoal/fl"
	"shoal/internal/testsupport"
	shoalv1 "shoal/proto/shoal/v1"
)

// endpoint is how a client reaches a test server.
type endpoint struct {
	target string
	dial   []grpc.DialOption
}

func newTestServer(t *testing.T, cfg ServerConfig) *Server {
	t.Helper()
	if cfg.RunID == "" {
		cfg.RunID = "test-run"
	}
	if cfg.Authenticate == nil {
		cfg.Authenticate = InsecureAuthenticator()
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tcpServer serves on loopback TCP, for the tests that nothing times: the real network
// stack, and events to wait on. Unless cfg sets one, the heartbeat is long, so that a machine
// too loaded to run a heartbeat on time cannot drop a session under a test that is not about
// heartbeats.
func tcpServer(t *testing.T, cfg ServerConfig) (*Server, endpoint) {
	t.Helper()
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = time.Hour
	}
	s := newTestServer(t, cfg)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	testsupport.Serve(t, lis, func(l net.Listener) error { return s.Serve(l) }, func() { s.Close(false, "test over", time.Second) })
	return s, endpoint{target: lis.Addr().String()}
}

// memHeartbeat is the heartbeat of servers on the in-memory network, on the fake clock.
const memHeartbeat = 500 * time.Millisecond

// memServer serves on an in-memory network, for tests inside a synctest bubble: heartbeats,
// deadlines and backoffs run on the bubble's fake clock, so a test can say exactly when
// something must have happened.
func memServer(t *testing.T, cfg ServerConfig) (*Server, endpoint) {
	t.Helper()
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = memHeartbeat
	}
	s := newTestServer(t, cfg)
	nw := testsupport.NewNetwork()
	lis := nw.Listen(t, "shoal")
	testsupport.Serve(t, lis, func(l net.Listener) error { return s.Serve(l) }, func() { s.Close(false, "test over", time.Second) })
	return s, endpoint{target: testsupport.Target("shoal"), dial: nw.DialOptions()}
}

// startClient runs a client runtime until the test ends (or it is stopped).
func startClient(t *testing.T, ep endpoint, name string, local func(round int, id fl.ClientID) (fl.Client, error), secure func(string, []byte) (fl.SecureSum, error)) *testsupport.Proc {
	t.Helper()
	return testsupport.Go(t, func(ctx context.Context) error {
		return RunClient(ctx, ClientConfig{Server: ep.target, Name: name, Insecure: true, Local: local, SecureSum: secure,
			MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, DialOptions: ep.dial})
	})
}

// runRound runs one round of e; a round that has not ended within testsupport.Patience (on
// the fake clock, in a synctest bubble) fails the test instead of hanging it.
func runRound(t *testing.T, e *fl.Engine, round int, global []float32) (fl.RoundReport, error) {
	t.Helper()
	type ended struct {
		rep fl.RoundReport
		err error
	}
	done := make(chan ended, 1)
	go func() {
		rep, err := e.RunRound(context.Background(), round, global)
		done <- ended{rep, err}
	}()
	r := testsupport.Recv(t, done, fmt.Sprintf("end of round %d", round))
	return r.rep, r.err
}

// trainers answers every task with a testsupport.Trainer of one example.
var trainers = testsupport.Trainers(1)

// blocked makes a trainer that never finishes a fit on its own.
func blocked(block <-chan struct{}) func(*testsupport.Trainer) {
	return func(c *testsupport.Trainer) { c.Block = block }
}

// A round over the network gives exactly the aggregate of the clients' updates; payloads far
// larger than a chunk are reassembled intact; evaluation answers come back; client ids follow
// the natural order of names. (Over loopback TCP: nothing here is timed.)
func TestRoundOverNetworkMatchesDirectAggregate(t *testing.T) {
	s, ep := tcpServer(t, ServerConfig{ChunkSize: 4096})
	names := []string{"node-10", "node-2", "node-1"} // natural order: node-1, node-2, node-10
	sizes := map[string]int{"node-1": 5, "node-2": 7, "node-10": 11}
	for _, name := range names {
		startClient(t, ep, name, testsupport.Trainers(sizes[name]), nil)
	}
	testsupport.WaitClients(t, s, 3)
	if got := s.Connected(); fmt.Sprint(got) != "[node-1 node-2 node-10]" {
		t.Fatalf("roster order %v", got)
	}
	e := testsupport.Engine(t, s, 1)
	e.Config.FederatedEval = true
	global := make([]float32, 50_000) // 200 KB: 49 chunks of 4 KiB
	for j := range global {
		global[j] = float32(j%13) * 0.1
	}
	want := testsupport.FedAvg(global, 1, map[fl.ClientID]int{0: 5, 1: 7, 2: 11})
	rep, err := runRound(t, e, 1, global)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Participants != 3 || rep.Dropped != 0 {
		t.Fatalf("report %+v", rep)
	}
	testsupport.CloseTo(t, global, want, 1e-6)
	// Federated accuracy: example-weighted mean of id/10.
	if wantAcc := (0*5 + 0.1*7 + 0.2*11) / 23.0; math.Abs(rep.FedAccuracy-wantAcc) > 1e-9 {
		t.Fatalf("federated accuracy %v, want %v", rep.FedAccuracy, wantAcc)
	}
}

// A client that disconnects in the middle of its fit is delivered as dropped at once (not at
// the deadline, nor when a heartbeat to it fails or its own are missed) and the round
// finishes with the others. On the fake clock: the round ends within one heartbeat interval.
func TestClientDisconnectMidRound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, ep := memServer(t, ServerConfig{})
		started := make(chan fl.ClientID, 4)
		block := make(chan struct{}) // never closed: client 1 hangs in training
		startClient(t, ep, "a", trainers, nil)
		victim := startClient(t, ep, "b", testsupport.Trainers(1, blocked(block), func(c *testsupport.Trainer) { c.Started = started }), nil)
		startClient(t, ep, "c", trainers, nil)
		testsupport.WaitClients(t, s, 3)
		go func() {
			<-started
			victim.Stop() // the client process goes away mid-fit
		}()
		tap, fitErrs := testsupport.FitErrors(s)
		e := testsupport.Engine(t, tap, 1)
		e.Config.RoundTimeout = 20 * time.Second
		e.Logger = testsupport.NewRecorder(t).Logger()
		global := make([]float32, 10)
		want := testsupport.FedAvg(global, 1, map[fl.ClientID]int{0: 1, 2: 1})
		start := time.Now()
		rep, err := runRound(t, e, 1, global)
		if err != nil {
			t.Fatal(err)
		}
		el := time.Since(start)
		if rep.Participants != 2 || rep.Dropped != 1 {
			t.Fatalf("report %+v", rep)
		}
		if err := fitErrs[1]; !errors.Is(err, fl.ErrDropped) || errors.Is(err, fl.ErrTimeout) {
			t.Fatalf("the vanished client's outcome: %v, want dropped", err)
		}
		// Its session's end is news at once: nothing waits for a heartbeat to fail to go out
		// (within one interval) or to be missed (three).
		if el >= memHeartbeat {
			t.Fatalf("round took %v of fake time: the dead client was not noticed when its session ended", el)
		}
		testsupport.CloseTo(t, global, want, 1e-6)
	})
}

// A client that never answers is delivered as timed out when the engine's deadline passes, and
// not before; its session, kept alive by heartbeats, stays open.
func TestDeadlineBoundsTheRound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, ep := memServer(t, ServerConfig{})
		startClient(t, ep, "slow", testsupport.Trainers(1, blocked(make(chan struct{}))), nil)
		startClient(t, ep, "fast", trainers, nil)
		testsupport.WaitClients(t, s, 2)
		tap, fitErrs := testsupport.FitErrors(s)
		e := testsupport.Engine(t, tap, 1)
		const deadline = 30 * time.Second // 60 heartbeats
		e.Config.RoundTimeout = deadline
		start := time.Now()
		rep, err := runRound(t, e, 1, make([]float32, 8))
		if err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el != deadline {
			t.Fatalf("round ended after %v, want exactly the %v deadline", el, deadline)
		}
		if rep.Participants != 1 || rep.Dropped != 1 {
			t.Fatalf("report %+v", rep)
		}
		// The roster is in name order: fast is 0, slow is 1.
		if err := fitErrs[1]; !errors.Is(err, fl.ErrTimeout) {
			t.Fatalf("the slow client's outcome: %v, want a timeout", err)
		}
		if got := fmt.Sprint(s.Connected()); got != "[fast slow]" {
			t.Fatalf("connected after the round: %s", got)
		}
	})
}

// Over-selection: of four clients asked, the round keeps the first two to answer and cancels
// the rest at once, without waiting for its deadline.
func TestOverSelectionFinishesWithTheFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, ep := memServer(t, ServerConfig{})
		block := make(chan struct{})
		defer close(block)
		for i, name := range []string{"c0", "c1", "c2", "c3"} {
			local := trainers
			if i >= 2 {
				local = testsupport.Trainers(1, blocked(block)) // c2 and c3 would never finish
			}
			startClient(t, ep, name, local, nil)
		}
		testsupport.WaitClients(t, s, 4)
		tap, fitErrs := testsupport.FitErrors(s)
		e := testsupport.Engine(t, tap, 0.5)
		e.Config.RoundTimeout = time.Hour
		over, err := s.OverSelect(e.Sampler, 2)
		if err != nil {
			t.Fatal(err)
		}
		e.Sampler = over
		global := make([]float32, 16)
		want := testsupport.FedAvg(global, 1, map[fl.ClientID]int{0: 1, 1: 1})
		start := time.Now()
		rep, err := runRound(t, e, 1, global)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Sampled != 4 || rep.Participants != 2 {
			t.Fatalf("report %+v", rep)
		}
		if el := time.Since(start); el >= e.Config.RoundTimeout {
			t.Fatalf("round took %v: it waited for its deadline", el)
		}
		for _, id := range []fl.ClientID{2, 3} {
			if err := fitErrs[id]; !errors.Is(err, errOverSelected) {
				t.Fatalf("client %d: %v, want over-selected", id, err)
			}
		}
		testsupport.CloseTo(t, global, want, 1e-6)
		if _, err := s.OverSelect(e.Sampler, 0.5); err == nil {
			t.Fatal("factor below 1 accepted")
		}
	})
}

// Over-selection keeps exactly the round's need even when the extra clients' answers arrive
// together with the last needed one: answers already in flight are refused, not aggregated.
func TestOverSelectionKeepsExactlyTheNeed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, ep := memServer(t, ServerConfig{})
		for _, name := range []string{"c0", "c1", "c2", "c3", "c4", "c5"} {
			startClient(t, ep, name, trainers, nil)
		}
		testsupport.WaitClients(t, s, 6)
		tap, fitErrs := testsupport.FitErrors(s)
		e := testsupport.Engine(t, tap, 1.0/3)
		e.Config.RoundTimeout = time.Hour
		over, err := s.OverSelect(e.Sampler, 3)
		if err != nil {
			t.Fatal(err)
		}
		e.Sampler = over
		rep, err := runRound(t, e, 1, make([]float32, 16))
		if err != nil {
			t.Fatal(err)
		}
		if rep.Sampled != 6 || rep.Participants != 2 {
			t.Fatalf("report %+v: want 6 sampled and exactly 2 participants", rep)
		}
		refused := 0
		for _, err := range fitErrs {
			if errors.Is(err, errOverSelected) {
				refused++
			}
		}
		if refused != 4 {
			t.Fatalf("%d clients refused as over-selected, want 4 (%v)", refused, fitErrs)
		}
	})
}

// A secure round carries the protocol's stages over the network: no update travels in the
// clear in FitRes, and the sum equals the plain aggregate.
func TestSecureSumStagesOverNetwork(t *testing.T) {
	s, ep := tcpServer(t, ServerConfig{SecureSum: "clear"})
	factory := func(name string, _ []byte) (fl.SecureSum, error) {
		if name != "clear" {
			return nil, fmt.Errorf("unknown %q", name)
		}
		return testsupport.ClearSum{}, nil
	}
	for _, name := range []string{"x0", "x1", "x2"} {
		startClient(t, ep, name, func(r int, id fl.ClientID) (fl.Client, error) {
			return &testsupport.Trainer{ID: id, N: int(id) + 2}, nil
		}, factory)
	}
	testsupport.WaitClients(t, s, 3)
	e := testsupport.Engine(t, s, 1)
	e.SecureSum = testsupport.ClearSum{}
	var clearUpdates atomic.Int32
	e.Transport = &testsupport.FitTap{Transport: s, OnFit: func(o fl.FitOutcome) {
		if o.Res.Update != nil {
			clearUpdates.Add(1)
		}
	}}
	global := make([]float32, 3000)
	want := testsupport.FedAvg(global, 1, map[fl.ClientID]int{0: 2, 1: 3, 2: 4})
	rep, err := runRound(t, e, 1, global)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Participants != 3 || rep.Abandoned != "" || clearUpdates.Load() != 0 {
		t.Fatalf("report %+v, %d clear updates", rep, clearUpdates.Load())
	}
	testsupport.CloseTo(t, global, want, 1e-6)
	// An exchange for a round other than the current one is refused, not misrouted.
	var refused int
	err = s.Exchange(context.Background(), 7, 0, map[fl.ClientID][]byte{0: {0, 0}}, func(_ fl.ClientID, _ []byte, err error) {
		if err != nil {
			refused++
		}
	})
	if err == nil || refused != 1 {
		t.Fatalf("exchange for a stale round: err %v, %d refused", err, refused)
	}
}

// rawClient speaks the protocol by hand, to send what a real client never would.
type rawClient struct {
	t      *testing.T
	stream grpc.BidiStreamingClient[shoalv1.ClientMsg, shoalv1.ServerMsg]
	msgs   chan *shoalv1.ServerMsg
	err    chan error
}

func dialRaw(t *testing.T, ep endpoint, name string) *rawClient {
	t.Helper()
	conn, err := grpc.NewClient(ep.target, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, ep.dial...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := shoalv1.NewFederationClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rc := &rawClient{t: t, stream: stream, msgs: make(chan *shoalv1.ServerMsg, 1024), err: make(chan error, 1)}
	rc.send(&shoalv1.ClientMsg{Body: &shoalv1.ClientMsg_Hello{Hello: &shoalv1.Hello{ProtocolVersion: ProtocolVersion, Name: name}}})
	received := make(chan struct{})
	go func() {
		defer close(received)
		for {
			m, err := stream.Recv()
			if err != nil {
				rc.err <- err
				return
			}
			select {
			case rc.msgs <- m:
			case <-ctx.Done():
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		conn.Close()
		<-received
	})
	return rc
}

func (rc *rawClient) send(m *shoalv1.ClientMsg) {
	if err := rc.stream.Send(m); err != nil {
		rc.t.Logf("raw send: %v", err)
	}
}

// nextTask returns the next task (its payload chunks are consumed).
func (rc *rawClient) nextTask() *shoalv1.Task {
	rc.t.Helper()
	timeout := time.NewTimer(testsupport.Patience)
	defer timeout.Stop()
	for {
		select {
		case m := <-rc.msgs:
			if t := m.GetTask(); t != nil {
				return t
			}
		case err := <-rc.err:
			rc.t.Fatalf("session ended: %v", err)
		case <-timeout.C:
			rc.t.Fatal("no task")
		}
	}
}

// ended waits for the end of the session, skipping what the server sends until then.
func (rc *rawClient) ended() error {
	rc.t.Helper()
	timeout := time.NewTimer(testsupport.Patience)
	defer timeout.Stop()
	for {
		select {
		case <-rc.msgs:
		case err := <-rc.err:
			return err
		case <-timeout.C:
			rc.t.Fatal("session not ended")
		}
	}
}

func result(task *shoalv1.Task, payload []byte) *shoalv1.ClientMsg {
	return &shoalv1.ClientMsg{Body: &shoalv1.ClientMsg_Result{Result: &shoalv1.Result{
		Header: task.GetHeader(), Kind: task.GetKind(), NumExamples: 1,
		Payload: &shoalv1.Payload{Size: uint64(len(payload)), Crc32C: checksum(payload)},
	}}}
}

func chunk(h *shoalv1.Header, off int, data []byte) *shoalv1.ClientMsg {
	return &shoalv1.ClientMsg{Body: &shoalv1.ClientMsg_Chunk{Chunk: &shoalv1.Chunk{Header: h, Offset: uint64(off), Data: data}}}
}

// Malformed, oversized, foreign and replayed answers: each offender is cut off (or its answer
// refused) while an honest client's update is aggregated, and nothing is counted twice.
func TestBadAnswersRefusedOthersCarryOn(t *testing.T) {
	type attack struct {
		name   string
		do     func(rc *rawClient, task *shoalv1.Task)
		cutOff bool
	}
	good := func(task *shoalv1.Task) []byte { return floatBytes(make([]float32, 64)) }
	attacks := []attack{
		{"wrong-size", func(rc *rawClient, task *shoalv1.Task) {
			rc.send(result(task, make([]byte, 4*65)))
		}, true},
		{"oversized-announcement", func(rc *rawClient, task *shoalv1.Task) {
			m := result(task, nil)
			m.GetResult().Payload.Size = 1 << 40
			rc.send(m)
		}, true},
		{"bad-checksum", func(rc *rawClient, task *shoalv1.Task) {
			p := good(task)
			m := result(task, p)
			m.GetResult().Payload.Crc32C ^= 1
			rc.send(m)
			rc.send(chunk(task.GetHeader(), 0, p))
		}, true},
		{"wrong-round", func(rc *rawClient, task *shoalv1.Task) {
			m := result(task, good(task))
			m.GetResult().Header = &shoalv1.Header{RunId: task.GetHeader().GetRunId(), Round: 99, TaskId: task.GetHeader().GetTaskId()}
			rc.send(m)
		}, true},
		{"chunk-out-of-order", func(rc *rawClient, task *shoalv1.Task) {
			p := good(task)
			rc.send(result(task, p))
			rc.send(chunk(task.GetHeader(), 8, p[8:]))
		}, true},
		{"chunk-without-result", func(rc *rawClient, task *shoalv1.Task) {
			rc.send(chunk(task.GetHeader(), 0, []byte{1, 2, 3}))
		}, true},
		{"replay", func(rc *rawClient, task *shoalv1.Task) {
			p := floatBytes(testsupport.Update(0, 1, make([]float32, 64)))
			for range 3 { // the same answer three times: counted once, the others refused as stale
				rc.send(result(task, p))
				rc.send(chunk(task.GetHeader(), 0, p))
			}
		}, false},
		{"unknown-task", func(rc *rawClient, task *shoalv1.Task) {
			m := result(task, nil)
			m.GetResult().Header = &shoalv1.Header{RunId: "test-run", Round: 1, TaskId: 12345}
			rc.send(m)
		}, false},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { badAnswer(t, a.name, a.do, a.cutOff) })
		})
	}
}

// badAnswer plays one attack of TestBadAnswersRefusedOthersCarryOn, on the fake clock.
func badAnswer(t *testing.T, name string, do func(rc *rawClient, task *shoalv1.Task), cutOff bool) {
	s, ep := memServer(t, ServerConfig{ChunkSize: 1024})
	rc := dialRaw(t, ep, "a-mallory") // sorts first: client id 0
	startClient(t, ep, "b-honest", trainers, nil)
	testsupport.WaitClients(t, s, 2)
	tap, fitErrs := testsupport.FitErrors(s)
	e := testsupport.Engine(t, tap, 1)
	// The raw client sends no heartbeats: the deadline comes before its silence (three
	// heartbeats) could cut it off, so an unanswered task ends by the deadline alone.
	const deadline = 2 * memHeartbeat
	e.Config.RoundTimeout = deadline
	global := make([]float32, 64)
	done := make(chan struct{})
	var rep fl.RoundReport
	var err error
	start := time.Now()
	go func() { rep, err = e.RunRound(context.Background(), 1, global); close(done) }()
	task := rc.nextTask()
	do(rc, task)
	testsupport.Recv(t, done, "end of the round")
	el := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	mallory := fitErrs[0]
	if cutOff {
		if st := status.Code(rc.ended()); st != codes.InvalidArgument {
			t.Fatalf("offender's session ended with %v, want InvalidArgument", st)
		}
		if rep.Participants != 1 || rep.Dropped != 1 {
			t.Fatalf("report %+v", rep)
		}
		if !errors.Is(mallory, fl.ErrDropped) || el >= deadline {
			t.Fatalf("offender's outcome %v after %v: not dropped at once", mallory, el)
		}
		testsupport.CloseTo(t, global, testsupport.FedAvg(make([]float32, 64), 1, map[fl.ClientID]int{1: 1}), 1e-6)
		return
	}
	if name == "replay" {
		if rep.Participants != 2 || mallory != nil {
			t.Fatalf("report %+v, offender's outcome %v", rep, mallory)
		}
		testsupport.CloseTo(t, global, testsupport.FedAvg(make([]float32, 64), 1, map[fl.ClientID]int{0: 1, 1: 1}), 1e-6)
		return
	}
	// An answer to a task that is not the offender's is refused; its own task goes
	// unanswered until the deadline.
	if rep.Participants != 1 || !errors.Is(mallory, fl.ErrTimeout) || el != deadline {
		t.Fatalf("report %+v, offender's outcome %v after %v", rep, mallory, el)
	}
}

// A session must open with a hello, from an acceptable name, at the right version; a client
// silent past three heartbeats is cut off, at the first heartbeat tick after that (on the fake
// clock).
func TestSessionAdmission(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, ep := memServer(t, ServerConfig{Admit: func(_ context.Context, name string) error {
			if name == "revoked" {
				return errors.New("revoked")
			}
			return nil
		}})
		for _, tc := range []struct {
			hello *shoalv1.Hello
			code  codes.Code
		}{
			{&shoalv1.Hello{ProtocolVersion: 2, Name: "x"}, codes.FailedPrecondition},
			{&shoalv1.Hello{ProtocolVersion: ProtocolVersion, Name: "bad name!"}, codes.Unauthenticated},
			{&shoalv1.Hello{ProtocolVersion: ProtocolVersion, Name: ""}, codes.Unauthenticated},
			{&shoalv1.Hello{ProtocolVersion: ProtocolVersion, Name: "revoked"}, codes.PermissionDenied},
		} {
			conn, err := grpc.NewClient(ep.target, ep.dial...)
			if err != nil {
				t.Fatal(err)
			}
			stream, err := shoalv1.NewFederationClient(conn).Connect(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			_ = stream.Send(&shoalv1.ClientMsg{Body: &shoalv1.ClientMsg_Hello{Hello: tc.hello}})
			_, err = stream.Recv()
			if status.Code(err) != tc.code {
				t.Errorf("hello %v: %v, want %v", tc.hello, err, tc.code)
			}
			conn.Close()
		}
		// RunClient gives up on a refusal instead of retrying forever.
		err := RunClient(context.Background(), ClientConfig{Server: ep.target, Name: "revoked", Insecure: true,
			Local: testsupport.Fixed(&testsupport.Trainer{}), MinBackoff: time.Millisecond, DialOptions: ep.dial})
		if !errors.Is(err, ErrRefused) {
			t.Fatalf("refused client: %v", err)
		}

		// Silent after hello: the server's heartbeat check (every memHeartbeat) cuts it off
		// once it has been silent for more than three heartbeats: after the fourth tick.
		start := time.Now() // no later than the server's last sight of the client
		rc := dialRaw(t, ep, "quiet")
		testsupport.WaitClients(t, s, 1)
		rc.ended()
		if el := time.Since(start); el <= 3*memHeartbeat || el > 4*memHeartbeat {
			t.Fatalf("cut off after %v of silence, want more than 3 and at most 4 heartbeats of %v", el, memHeartbeat)
		}
		if n := len(s.Connected()); n != 0 {
			t.Fatalf("%d clients still connected", n)
		}
	})
}

// A client reconnects after the server goes away and comes back at the same address, and
// leaves when the server says the run is complete.
func TestClientReconnectsAndExitsWhenDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := testsupport.NewNetwork()
		ep := endpoint{target: testsupport.Target("shoal"), dial: nw.DialOptions()}
		s1 := newTestServer(t, ServerConfig{RunID: "r", Heartbeat: memHeartbeat})
		testsupport.Serve(t, nw.Listen(t, "shoal"), func(l net.Listener) error { return s1.Serve(l) }, func() { s1.Close(false, "test over", time.Second) })
		var fits atomic.Int32
		rc := startClient(t, ep, "phoenix", func(r int, id fl.ClientID) (fl.Client, error) {
			fits.Add(1)
			return &testsupport.Trainer{ID: id, N: 1}, nil
		}, nil)
		testsupport.WaitClients(t, s1, 1)
		s1.Close(false, "restart", time.Second) // not complete: the client must come back

		s2 := newTestServer(t, ServerConfig{RunID: "r", Heartbeat: memHeartbeat})
		testsupport.Serve(t, nw.Listen(t, "shoal"), func(l net.Listener) error { return s2.Serve(l) }, func() { s2.Close(false, "test over", time.Second) })
		testsupport.WaitClients(t, s2, 1)
		e := testsupport.Engine(t, s2, 1)
		if rep, err := runRound(t, e, 1, make([]float32, 4)); err != nil || rep.Participants != 1 || fits.Load() != 1 {
			t.Fatalf("round after reconnect: %+v %v, %d fits", rep, err, fits.Load())
		}
		s2.Close(true, "done", time.Second)
		if err := rc.Wait(t, "client exit when the run completed"); err != nil {
			t.Fatalf("client exit: %v", err)
		}
	})
}

func TestNaturalOrder(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		less bool
	}{
		{"client-2", "client-10", true}, {"client-10", "client-2", false}, {"a", "b", true},
		{"c01", "c1", false}, {"c1", "c01", true}, {"x9y", "x10a", true}, {"same", "same", false},
	} {
		if got := naturalCompare(tc.a, tc.b) < 0; got != tc.less {
			t.Errorf("%q < %q = %v", tc.a, tc.b, got)
		}
	}
}

// Roster ids are stable: a client that leaves keeps its id (answering "not connected") and a
// newcomer gets the next id, so the ids of the others never shift between rounds.
func TestRosterIdsStayStable(t *testing.T) {
	log := testsupport.NewRecorder(t)
	s, ep := tcpServer(t, ServerConfig{Logger: log.Logger()})
	var mu sync.Mutex
	ids := map[string]fl.ClientID{}
	local := func(name string) func(int, fl.ClientID) (fl.Client, error) {
		return func(_ int, id fl.ClientID) (fl.Client, error) {
			mu.Lock()
			ids[name] = id
			mu.Unlock()
			return &testsupport.Trainer{ID: id, N: 1}, nil
		}
	}
	startClient(t, ep, "a", local("a"), nil)
	b := startClient(t, ep, "b", local("b"), nil)
	startClient(t, ep, "c", local("c"), nil)
	testsupport.WaitClients(t, s, 3)
	e := testsupport.Engine(t, s, 1)
	global := make([]float32, 4)
	if rep, err := runRound(t, e, 1, global); err != nil || rep.Participants != 3 {
		t.Fatalf("round 1: %+v %v", rep, err)
	}
	b.Stop()
	// The server logs the departure once b's session is off the roster.
	log.WaitFor(t, "of b's departure", testsupport.Message("client disconnected", "client", "b"))
	if got := fmt.Sprint(s.Connected()); got != "[a c]" {
		t.Fatalf("connected after b left: %s", got)
	}
	startClient(t, ep, "d", local("d"), nil)
	testsupport.WaitClients(t, s, 3)
	rep, err := runRound(t, e, 2, global)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sampled != 4 || rep.Participants != 3 || rep.Dropped != 1 {
		t.Fatalf("round 2: %+v (want 4 ids, 3 answering, b's id not connected)", rep)
	}
	mu.Lock()
	defer mu.Unlock()
	if ids["a"] != 0 || ids["c"] != 2 || ids["d"] != 3 {
		t.Fatalf("ids after b left and d joined: %v (want a 0, c 2, d 3)", ids)
	}
}
