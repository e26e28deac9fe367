package grpctransport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"shoal/fl"
	shoalv1 "shoal/proto/shoal/v1"
	"shoal/strategy"
)

// fakeClient's update is a function of its id, the round and the global parameters, so the
// expected aggregate can be computed independently.
type fakeClient struct {
	id      fl.ClientID
	n       int
	started chan<- fl.ClientID // told when a fit starts
	block   <-chan struct{}    // fit waits for it (or ctx) when set
	fits    *atomic.Int32
}

func updateOf(id fl.ClientID, round int, params []float32) []float32 {
	u := make([]float32, len(params))
	for j := range u {
		u[j] = float32(int(id)+1)*0.01 + float32(j%5)*0.001 + float32(round)*0.0001 - params[j]*0.5
	}
	return u
}

func (c *fakeClient) Fit(ctx context.Context, ins fl.FitIns) (fl.FitRes, error) {
	if c.fits != nil {
		c.fits.Add(1)
	}
	if c.started != nil {
		c.started <- c.id
	}
	if c.block != nil {
		select {
		case <-c.block:
		case <-ctx.Done():
			return fl.FitRes{}, ctx.Err()
		}
	}
	return fl.FitRes{Update: updateOf(c.id, ins.Round, ins.Params), NumExamples: c.n, Loss: float64(c.id)}, nil
}

func (c *fakeClient) Evaluate(_ context.Context, params []float32) (fl.EvalRes, error) {
	return fl.EvalRes{Loss: 1, Accuracy: float64(c.id) / 10, NumExamples: c.n}, nil
}

func startServer(t *testing.T, cfg ServerConfig) (*Server, string) {
	t.Helper()
	if cfg.RunID == "" {
		cfg.RunID = "test-run"
	}
	if cfg.Authenticate == nil {
		cfg.Authenticate = InsecureAuthenticator()
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 500 * time.Millisecond
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(func() { s.Close(false, "test over", time.Second) })
	return s, lis.Addr().String()
}

type runningClient struct {
	cancel context.CancelFunc
	done   chan error
}

func startClient(t *testing.T, addr, name string, local func(round int, id fl.ClientID) (fl.Client, error), secure func(string, []byte) (fl.SecureSum, error)) *runningClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rc := &runningClient{cancel: cancel, done: make(chan error, 1)}
	go func() {
		rc.done <- RunClient(ctx, ClientConfig{Server: addr, Name: name, Insecure: true, Local: local, SecureSum: secure,
			MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	}()
	t.Cleanup(func() {
		cancel()
		<-rc.done
	})
	return rc
}

func fixedLocal(c fl.Client) func(int, fl.ClientID) (fl.Client, error) {
	return func(int, fl.ClientID) (fl.Client, error) { return c, nil }
}

func waitClients(t *testing.T, s *Server, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitForClients(ctx, n); err != nil {
		t.Fatal(err)
	}
}

func newEngine(t *testing.T, tr fl.Transport, fraction float64) *fl.Engine {
	t.Helper()
	strat, err := strategy.New("fedavg", nil)
	if err != nil {
		t.Fatal(err)
	}
	sampler, err := fl.NewFractionSampler(fraction, 1)
	if err != nil {
		t.Fatal(err)
	}
	return &fl.Engine{
		Config:   fl.EngineConfig{Rounds: 1, MinResults: 1, Fit: fl.FitConfig{Epochs: 1, BatchSize: 1, LR: 0.1}},
		Strategy: strat, Sampler: sampler, Transport: tr, Source: rand.NewPCG(1, 2),
	}
}

// expectedRound is FedAvg over the given clients' updates, computed without the network.
func expectedRound(global []float32, round int, clients map[fl.ClientID]int) []float32 {
	sum := make([]float64, len(global))
	var w float64
	for id, n := range clients {
		u := updateOf(id, round, global)
		for j := range u {
			sum[j] += float64(n) * float64(u[j])
		}
		w += float64(n)
	}
	out := make([]float32, len(global))
	for j := range out {
		out[j] = global[j] + float32(sum[j]/w)
	}
	return out
}

func closeTo(t *testing.T, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("length %d, want %d", len(got), len(want))
	}
	for j := range got {
		if math.Abs(float64(got[j]-want[j])) > tol {
			t.Fatalf("coordinate %d: got %v, want %v", j, got[j], want[j])
		}
	}
}

// A round over the network gives exactly the aggregate of the clients' updates; payloads far
// larger than a chunk are reassembled intact; evaluation answers come back; client ids follow
// the natural order of names.
func TestRoundOverNetworkMatchesDirectAggregate(t *testing.T) {
	s, addr := startServer(t, ServerConfig{ChunkSize: 4096})
	names := []string{"node-10", "node-2", "node-1"} // natural order: node-1, node-2, node-10
	sizes := map[string]int{"node-1": 5, "node-2": 7, "node-10": 11}
	for _, name := range names {
		startClient(t, addr, name, func(round int, id fl.ClientID) (fl.Client, error) {
			return &fakeClient{id: id, n: sizes[name]}, nil
		}, nil)
	}
	waitClients(t, s, 3)
	if got := s.Connected(); fmt.Sprint(got) != "[node-1 node-2 node-10]" {
		t.Fatalf("roster order %v", got)
	}
	e := newEngine(t, s, 1)
	e.Config.FederatedEval = true
	global := make([]float32, 50_000) // 200 KB: 49 chunks of 4 KiB
	for j := range global {
		global[j] = float32(j%13) * 0.1
	}
	want := expectedRound(global, 1, map[fl.ClientID]int{0: 5, 1: 7, 2: 11})
	rep, err := e.RunRound(context.Background(), 1, global)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Participants != 3 || rep.Dropped != 0 {
		t.Fatalf("report %+v", rep)
	}
	closeTo(t, global, want, 1e-6)
	// Federated accuracy: example-weighted mean of id/10.
	if wantAcc := (0*5 + 0.1*7 + 0.2*11) / 23.0; math.Abs(rep.FedAccuracy-wantAcc) > 1e-9 {
		t.Fatalf("federated accuracy %v, want %v", rep.FedAccuracy, wantAcc)
	}
}

// A client that disconnects in the middle of its fit is delivered as dropped at once (not at
// the deadline) and the round finishes with the others.
func TestClientDisconnectMidRound(t *testing.T) {
	s, addr := startServer(t, ServerConfig{})
	started := make(chan fl.ClientID, 4)
	block := make(chan struct{}) // never closed: client 1 hangs in training
	startClient(t, addr, "a", func(r int, id fl.ClientID) (fl.Client, error) { return &fakeClient{id: id, n: 1}, nil }, nil)
	victim := startClient(t, addr, "b", func(r int, id fl.ClientID) (fl.Client, error) {
		return &fakeClient{id: id, n: 1, started: started, block: block}, nil
	}, nil)
	startClient(t, addr, "c", func(r int, id fl.ClientID) (fl.Client, error) { return &fakeClient{id: id, n: 1}, nil }, nil)
	waitClients(t, s, 3)
	go func() {
		<-started
		victim.cancel() // the client process goes away mid-fit
	}()
	e := newEngine(t, s, 1)
	e.Config.RoundTimeout = 20 * time.Second
	e.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	global := make([]float32, 10)
	want := expectedRound(global, 1, map[fl.ClientID]int{0: 1, 2: 1})
	start := time.Now()
	rep, err := e.RunRound(context.Background(), 1, global)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Participants != 2 || rep.Dropped != 1 {
		t.Fatalf("report %+v", rep)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("round took %v: the dead client was not noticed promptly", el)
	}
	closeTo(t, global, want, 1e-6)
}

// A client that never answers is delivered as timed out when the engine's deadline passes.
func TestDeadlineBoundsTheRound(t *testing.T) {
	s, addr := startServer(t, ServerConfig{})
	startClient(t, addr, "slow", func(r int, id fl.ClientID) (fl.Client, error) {
		return &fakeClient{id: id, n: 1, block: make(chan struct{})}, nil
	}, nil)
	startClient(t, addr, "fast", func(r int, id fl.ClientID) (fl.Client, error) { return &fakeClient{id: id, n: 1}, nil }, nil)
	waitClients(t, s, 2)
	e := newEngine(t, s, 1)
	e.Config.RoundTimeout = 300 * time.Millisecond
	start := time.Now()
	rep, err := e.RunRound(context.Background(), 1, make([]float32, 8))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Participants != 1 || rep.Dropped != 1 || time.Since(start) > 3*time.Second {
		t.Fatalf("report %+v after %v", rep, time.Since(start))
	}
}

// Over-selection: of four clients asked, the round keeps the first two to answer and cancels
// the rest.
func TestOverSelectionFinishesWithTheFirst(t *testing.T) {
	s, addr := startServer(t, ServerConfig{})
	block := make(chan struct{})
	defer close(block)
	for i, name := range []string{"c0", "c1", "c2", "c3"} {
		startClient(t, addr, name, func(r int, id fl.ClientID) (fl.Client, error) {
			c := &fakeClient{id: id, n: 1}
			if i >= 2 {
				c.block = block // c2 and c3 would never finish
			}
			return c, nil
		}, nil)
	}
	waitClients(t, s, 4)
	e := newEngine(t, s, 0.5)
	over, err := s.OverSelect(e.Sampler, 2)
	if err != nil {
		t.Fatal(err)
	}
	e.Sampler = over
	global := make([]float32, 16)
	want := expectedRound(global, 1, map[fl.ClientID]int{0: 1, 1: 1})
	start := time.Now()
	rep, err := e.RunRound(context.Background(), 1, global)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sampled != 4 || rep.Participants != 2 || time.Since(start) > 5*time.Second {
		t.Fatalf("report %+v after %v", rep, time.Since(start))
	}
	closeTo(t, global, want, 1e-6)
	if _, err := s.OverSelect(e.Sampler, 0.5); err == nil {
		t.Fatal("factor below 1 accepted")
	}
}

// clearSum is a two-stage stand-in for a secure sum (it hides nothing): it exercises Exchange,
// the client's held input and the stage plumbing over the network.
type clearSum struct{}

func (clearSum) Name() string     { return "clear" }
func (clearSum) Describe() string { return "test protocol" }
func (clearSum) Stages() []string { return []string{"confirm", "input"} }
func (clearSum) NewServer(round int, clients []fl.ClientID, dim int, _ float64) (fl.SumServer, error) {
	alive := map[fl.ClientID]bool{}
	for _, id := range clients {
		alive[id] = true
	}
	return &clearServer{dim: dim, alive: alive, res: fl.SumResult{Sum: make([]float64, dim)}}, nil
}
func (clearSum) NewClient(round int, id fl.ClientID, in fl.SumInput) (fl.SumClient, error) {
	return &clearClient{in: in, id: id}, nil
}

type clearServer struct {
	dim, stage int
	alive      map[fl.ClientID]bool
	res        fl.SumResult
}

func (s *clearServer) Next() (map[fl.ClientID][]byte, bool, error) {
	if s.stage == 2 {
		return nil, true, nil
	}
	msgs := map[fl.ClientID][]byte{}
	for id := range s.alive {
		msgs[id] = []byte{byte(s.stage), byte(id)}
	}
	s.stage++
	return msgs, false, nil
}

func (s *clearServer) Receive(from fl.ClientID, msg []byte) error {
	if s.stage == 1 {
		if string(msg) != fmt.Sprintf("ok %d", from) {
			return fmt.Errorf("bad confirmation %q", msg)
		}
		return nil
	}
	if len(msg) != 8*(s.dim+1) {
		return errors.New("bad input length")
	}
	w := math.Float64frombits(binary.LittleEndian.Uint64(msg))
	for j := range s.dim {
		s.res.Sum[j] += w * math.Float64frombits(binary.LittleEndian.Uint64(msg[8*(j+1):]))
	}
	s.res.Weight += w
	s.res.Count++
	return nil
}

func (s *clearServer) Drop(id fl.ClientID)           { delete(s.alive, id) }
func (s *clearServer) Result() (fl.SumResult, error) { return s.res, nil }

type clearClient struct {
	in fl.SumInput
	id fl.ClientID
}

func (c *clearClient) Handle(msg []byte) ([]byte, error) {
	if len(msg) != 2 || fl.ClientID(msg[1]) != c.id {
		return nil, errors.New("message for another client")
	}
	if msg[0] == 0 {
		return fmt.Appendf(nil, "ok %d", c.id), nil
	}
	out := binary.LittleEndian.AppendUint64(nil, math.Float64bits(c.in.Weight))
	for _, v := range c.in.Update {
		out = binary.LittleEndian.AppendUint64(out, math.Float64bits(float64(v)))
	}
	return out, nil
}

// A secure round carries the protocol's stages over the network: no update travels in the
// clear in FitRes, and the sum equals the plain aggregate.
func TestSecureSumStagesOverNetwork(t *testing.T) {
	s, addr := startServer(t, ServerConfig{SecureSum: "clear"})
	factory := func(name string, _ []byte) (fl.SecureSum, error) {
		if name != "clear" {
			return nil, fmt.Errorf("unknown %q", name)
		}
		return clearSum{}, nil
	}
	for _, name := range []string{"x0", "x1", "x2"} {
		startClient(t, addr, name, func(r int, id fl.ClientID) (fl.Client, error) { return &fakeClient{id: id, n: int(id) + 2}, nil }, factory)
	}
	waitClients(t, s, 3)
	e := newEngine(t, s, 1)
	e.SecureSum = clearSum{}
	var clearUpdates atomic.Int32
	tap := &tapTransport{Transport: s, onFit: func(o fl.FitOutcome) {
		if o.Res.Update != nil {
			clearUpdates.Add(1)
		}
	}}
	e.Transport = tap
	global := make([]float32, 3000)
	want := expectedRound(global, 1, map[fl.ClientID]int{0: 2, 1: 3, 2: 4})
	rep, err := e.RunRound(context.Background(), 1, global)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Participants != 3 || rep.Abandoned != "" || clearUpdates.Load() != 0 {
		t.Fatalf("report %+v, %d clear updates", rep, clearUpdates.Load())
	}
	closeTo(t, global, want, 1e-6)
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

type tapTransport struct {
	fl.Transport
	onFit func(fl.FitOutcome)
}

func (t *tapTransport) Fit(ctx context.Context, cohort []fl.ClientID, ins fl.FitIns, deliver func(fl.FitOutcome)) error {
	return t.Transport.Fit(ctx, cohort, ins, func(o fl.FitOutcome) { t.onFit(o); deliver(o) })
}

// rawClient speaks the protocol by hand, to send what a real client never would.
type rawClient struct {
	t      *testing.T
	stream grpc.BidiStreamingClient[shoalv1.ClientMsg, shoalv1.ServerMsg]
	conn   *grpc.ClientConn
	msgs   chan *shoalv1.ServerMsg
	err    chan error
}

func dialRaw(t *testing.T, addr, name string) *rawClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stream, err := shoalv1.NewFederationClient(conn).Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rc := &rawClient{t: t, stream: stream, conn: conn, msgs: make(chan *shoalv1.ServerMsg, 1024), err: make(chan error, 1)}
	rc.send(&shoalv1.ClientMsg{Body: &shoalv1.ClientMsg_Hello{Hello: &shoalv1.Hello{ProtocolVersion: ProtocolVersion, Name: name}}})
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				rc.err <- err
				return
			}
			rc.msgs <- m
		}
	}()
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
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-rc.msgs:
			if t := m.GetTask(); t != nil {
				return t
			}
		case err := <-rc.err:
			rc.t.Fatalf("session ended: %v", err)
		case <-timeout:
			rc.t.Fatal("no task")
		}
	}
}

func (rc *rawClient) ended() error {
	rc.t.Helper()
	select {
	case err := <-rc.err:
		return err
	case <-time.After(10 * time.Second):
		rc.t.Fatal("session not ended")
		return nil
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
			p := floatBytes(updateOf(0, 1, make([]float32, 64)))
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
			s, addr := startServer(t, ServerConfig{ChunkSize: 1024})
			rc := dialRaw(t, addr, "a-mallory") // sorts first: client id 0
			startClient(t, addr, "b-honest", func(r int, id fl.ClientID) (fl.Client, error) { return &fakeClient{id: id, n: 1}, nil }, nil)
			waitClients(t, s, 2)
			e := newEngine(t, s, 1)
			e.Config.RoundTimeout = 2 * time.Second
			global := make([]float32, 64)
			done := make(chan struct{})
			var rep fl.RoundReport
			var err error
			go func() { rep, err = e.RunRound(context.Background(), 1, global); close(done) }()
			task := rc.nextTask()
			a.do(rc, task)
			<-done
			if err != nil {
				t.Fatal(err)
			}
			if a.cutOff {
				if st := status.Code(rc.ended()); st != codes.InvalidArgument {
					t.Fatalf("offender's session ended with %v, want InvalidArgument", st)
				}
				if rep.Participants != 1 || rep.Dropped != 1 {
					t.Fatalf("report %+v", rep)
				}
				closeTo(t, global, expectedRound(make([]float32, 64), 1, map[fl.ClientID]int{1: 1}), 1e-6)
				return
			}
			if a.name == "replay" {
				if rep.Participants != 2 {
					t.Fatalf("report %+v", rep)
				}
				closeTo(t, global, expectedRound(make([]float32, 64), 1, map[fl.ClientID]int{0: 1, 1: 1}), 1e-6)
			} else if rep.Participants != 1 {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}

// A session must open with a hello, from an acceptable name, at the right version; a client
// silent past three heartbeats is cut off.
func TestSessionAdmission(t *testing.T) {
	s, addr := startServer(t, ServerConfig{Admit: func(_ context.Context, name string) error {
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
		conn, _ := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
	err := RunClient(context.Background(), ClientConfig{Server: addr, Name: "revoked", Insecure: true,
		Local: fixedLocal(&fakeClient{}), MinBackoff: time.Millisecond})
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("refused client: %v", err)
	}

	// Silent after hello: cut off within a few heartbeats (500 ms each).
	rc := dialRaw(t, addr, "quiet")
	waitClients(t, s, 1)
	start := time.Now()
	for {
		select {
		case <-rc.msgs:
			continue
		case <-rc.err:
		case <-time.After(5 * time.Second):
			t.Fatal("silent client not cut off")
		}
		break
	}
	if el := time.Since(start); el < time.Second {
		t.Fatalf("cut off after %v, before three heartbeats", el)
	}
	if n := len(s.Connected()); n != 0 {
		t.Fatalf("%d clients still connected", n)
	}
}

// A client reconnects after the server goes away and comes back, and leaves when the server
// says the run is complete.
func TestClientReconnectsAndExitsWhenDone(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	s1, _ := NewServer(ServerConfig{RunID: "r", Authenticate: InsecureAuthenticator(), Heartbeat: 500 * time.Millisecond})
	go func() { _ = s1.Serve(lis) }()
	var mu sync.Mutex
	fits := 0
	rc := startClient(t, addr, "phoenix", func(r int, id fl.ClientID) (fl.Client, error) {
		mu.Lock()
		fits++
		mu.Unlock()
		return &fakeClient{id: id, n: 1}, nil
	}, nil)
	waitClients(t, s1, 1)
	s1.Close(false, "restart", time.Second) // not complete: the client must come back

	lis2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := NewServer(ServerConfig{RunID: "r", Authenticate: InsecureAuthenticator(), Heartbeat: 500 * time.Millisecond})
	go func() { _ = s2.Serve(lis2) }()
	waitClients(t, s2, 1)
	e := newEngine(t, s2, 1)
	if rep, err := e.RunRound(context.Background(), 1, make([]float32, 4)); err != nil || rep.Participants != 1 {
		t.Fatalf("round after reconnect: %+v %v", rep, err)
	}
	s2.Close(true, "done", time.Second)
	select {
	case err := <-rc.done:
		if err != nil {
			t.Fatalf("client exit: %v", err)
		}
		rc.done <- nil // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("client did not exit when the run completed")
	}
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

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func mustFedAvg(tb testing.TB) fl.Strategy {
	s, err := strategy.New("fedavg", nil)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func mustSampler(tb testing.TB) fl.Sampler {
	s, err := fl.NewFractionSampler(1, 1)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// Roster ids are stable: a client that leaves keeps its id (answering "not connected") and a
// newcomer gets the next id, so the ids of the others never shift between rounds.
func TestRosterIdsStayStable(t *testing.T) {
	s, addr := startServer(t, ServerConfig{})
	var mu sync.Mutex
	ids := map[string]fl.ClientID{}
	local := func(name string) func(int, fl.ClientID) (fl.Client, error) {
		return func(_ int, id fl.ClientID) (fl.Client, error) {
			mu.Lock()
			ids[name] = id
			mu.Unlock()
			return &fakeClient{id: id, n: 1}, nil
		}
	}
	startClient(t, addr, "a", local("a"), nil)
	b := startClient(t, addr, "b", local("b"), nil)
	startClient(t, addr, "c", local("c"), nil)
	waitClients(t, s, 3)
	e := newEngine(t, s, 1)
	global := make([]float32, 4)
	if rep, err := e.RunRound(context.Background(), 1, global); err != nil || rep.Participants != 3 {
		t.Fatalf("round 1: %+v %v", rep, err)
	}
	b.cancel()
	<-b.done
	b.done <- nil // for the cleanup
	for deadline := time.Now().Add(10 * time.Second); len(s.Connected()) != 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("b never left")
		}
	}
	startClient(t, addr, "d", local("d"), nil)
	waitClients(t, s, 3)
	rep, err := e.RunRound(context.Background(), 2, global)
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
