package grpctransport

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"shoal/fl"
	shoalv1 "shoal/proto/shoal/v1"
)

// ClientConfig configures the client runtime.
type ClientConfig struct {
	// Server is the server's address, host:port, or a comma-separated list of them (the edges
	// of a tier): the client connects to one and, after a failure, to any other.
	Server string
	// Name is the client's name; under TLS it must be the certificate's.
	Name string
	// TLS is the client's mutual-TLS configuration; nil is allowed only with Insecure. With a
	// list of servers, leave its ServerName empty: each server is then verified against its own
	// host (a ServerName set names every server so).
	TLS      *tls.Config
	Insecure bool
	// Local returns the trainer for a task of the given round (0 for evaluation) under the
	// client id the server gave it, so a reproducible run can seed local shuffles exactly as
	// the simulator does.
	Local func(round int, id fl.ClientID) (fl.Client, error)
	// SecureSum builds the run's secure-sum protocol from the name and parameters the server
	// announces; nil refuses secure rounds.
	SecureSum func(name string, params []byte) (fl.SecureSum, error)
	// MaxPayload bounds what the server may send in one task (default 2 GiB).
	MaxPayload uint64
	// MinBackoff and MaxBackoff bound the reconnect delay (defaults 250 ms and 30 s); each
	// failed attempt doubles it, with full jitter.
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
	// DialOptions are added to the connection's options (tests).
	DialOptions []grpc.DialOption
	// OnTask, if set, is called before each task is worked on (fault injection, progress).
	OnTask func(kind string, round, stage int)
	// Policy is the protection this client requires; a run or task that weakens it is refused
	// (a run: RunClient returns an error wrapping fl.ErrPolicy; a task: the client leaves the
	// round). Whatever the policy, a run that announced a secure sum never gets an update in
	// the clear.
	Policy fl.ClientPolicy
	// Model describes the client's model and data for its Hello (architecture, input shape, the
	// classes of its local data): a server that announces a model refuses an incompatible
	// client at once. Nil sends none.
	Model *ModelSpec
	// Adopt, if set, receives the model the server announces in each Welcome before any task:
	// the client builds its model for the run's classes and numbers its labels by them. A
	// Welcome without a model, one that fails Model's check, or an error from Adopt ends
	// RunClient with an error wrapping ErrIncompatible.
	Adopt func(ModelSpec) error
}

// ErrRefused is returned by RunClient when the server refuses the client for good (unknown or
// revoked identity, wrong protocol version): retrying cannot help.
var ErrRefused = errors.New("server refused the client")

// RunClient connects to the server and answers its tasks until the server says the run is
// complete (nil), the server refuses the client (ErrRefused), or ctx is done. A lost or failed
// connection is retried with exponential backoff and jitter.
func RunClient(ctx context.Context, cfg ClientConfig) error {
	if cfg.Server == "" || cfg.Local == nil {
		return errors.New("client: server address and local trainer are required")
	}
	if cfg.TLS == nil && !cfg.Insecure {
		return errors.New("client: no TLS configuration; plaintext needs an explicit insecure setting")
	}
	if err := cfg.Policy.Validate(); err != nil {
		return fmt.Errorf("client: privacy policy: %w", err)
	}
	if err := validName(cfg.Name); err != nil && (cfg.Insecure || cfg.Name != "") {
		return fmt.Errorf("client: %w", err)
	}
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = 2 << 30
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(30*time.Second, cfg.MinBackoff)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rt := &runtime{cfg: cfg, log: log, seen: map[uint64]bool{}}
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS)
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20+messageOverhead), grpc.MaxCallSendMsgSize(16<<20+messageOverhead)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		// gRPC's own reconnect backoff (1 s, growing to 2 min) would otherwise sit under ours:
		// a refused client would wait for it between attempts instead of giving up promptly.
		grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: 20 * time.Second,
			Backoff: backoff.Config{BaseDelay: cfg.MinBackoff, Multiplier: 2, Jitter: 0.2, MaxDelay: cfg.MaxBackoff}}),
	}, cfg.DialOptions...)
	target := cfg.Server
	if addrs := strings.Split(cfg.Server, ","); len(addrs) > 1 {
		// A list of servers (a tier's edges): connect to one, and after a failure to any other.
		// Each client shuffles the list so that a population spreads over them.
		rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
		// Under TLS each server's certificate is verified against the host dialled (unless
		// cfg.TLS names one server for all): a certificate for one edge never passes for another.
		state := resolver.State{}
		for _, a := range addrs {
			a = strings.TrimSpace(a)
			host, _, err := net.SplitHostPort(a)
			if err != nil {
				return fmt.Errorf("client: server %q: %w", a, err)
			}
			state.Addresses = append(state.Addresses, resolver.Address{Addr: a, ServerName: host})
		}
		r := manual.NewBuilderWithScheme("shoal-servers")
		r.InitialState(state)
		opts, target = append(opts, grpc.WithResolvers(r)), r.Scheme()+":///servers"
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer conn.Close()
	api := shoalv1.NewFederationClient(conn)

	backoff := cfg.MinBackoff
	refusals := 0 // consecutive sessions the server ended before its welcome
	for {
		welcomed, complete, err := rt.session(ctx, api)
		switch {
		case complete:
			log.Info("run complete")
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, fl.ErrPolicy), errors.Is(err, ErrIncompatible):
			return err // this run can never meet the client's policy or train its model
		case permanent(err):
			return fmt.Errorf("%w: %v", ErrRefused, err)
		}
		var steer steered
		if errors.As(err, &steer) {
			// Pace steering: come back when the server asked, within [minSteer, maxSteer]: a
			// server can neither park a client for ever nor spin it in a reconnect loop.
			wait := min(max(steer.after, minSteer), maxSteer)
			log.Info("server asked to come back later", "in", wait.Round(time.Millisecond))
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
			backoff, refusals = cfg.MinBackoff, 0
			continue
		}
		if welcomed {
			backoff, refusals = cfg.MinBackoff, 0
		} else if handshakeFailure(err) {
			// A TLS 1.3 server checks the client's certificate after the client thinks the
			// handshake is done; the alert saying why may be lost when it closes. Refused
			// that way again and again, the client gives up.
			if refusals++; refusals >= maxHandshakeFailures {
				return fmt.Errorf("%w: the server ended %d connections in a row before accepting them (certificate not accepted?): %v",
					ErrRefused, refusals, err)
			}
		}
		wait := rand.N(backoff) + time.Millisecond
		log.Info("disconnected; retrying", "err", err, "in", wait.Round(time.Millisecond))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, cfg.MaxBackoff)
	}
}

// steered is a goodbye asking the client to come back after a while (pace steering).
type steered struct {
	after  time.Duration
	reason string
}

func (s steered) Error() string {
	return fmt.Sprintf("server said goodbye: %s (come back in %v)", s.reason, s.after)
}

// minSteer and maxSteer bound how long a server's pace steering may park a client (an honest
// server's windows lie within them: tier.MinPaceWindow, tier.MaxPaceWindow).
const (
	minSteer = time.Second
	maxSteer = time.Hour
)

// maxHandshakeFailures is how many connections in a row the server may close during the
// handshake before the client takes it as a refusal.
const maxHandshakeFailures = 5

func handshakeFailure(err error) bool {
	msg := err.Error()
	// A TLS 1.3 server that refuses the client's certificate closes the connection after the
	// client believes the handshake done: the client's next read or write fails in one of these
	// ways, depending on timing.
	return strings.Contains(msg, "server preface") || strings.Contains(msg, "handshake") ||
		strings.Contains(msg, "tls:") || strings.Contains(msg, "connection reset") || strings.Contains(msg, "broken pipe")
}

// permanent reports a refusal that retrying cannot cure: the server refused the identity or
// the protocol, or the TLS handshake failed on certificates (unknown CA, revoked, wrong name).
func permanent(err error) bool {
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied, codes.FailedPrecondition, codes.InvalidArgument:
		return true
	}
	msg := err.Error()
	for _, s := range []string{"x509:", "tls: bad certificate", "tls: unknown certificate", "tls: certificate required",
		"tls: revoked", "certificate is not", "certificate signed by unknown authority"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// runtime is the client's state across sessions: the task ids it has answered and the
// secure-sum half it holds.
type runtime struct {
	cfg ClientConfig
	log *slog.Logger

	seen      map[uint64]bool // task ids already received (replays are ignored)
	lastRound uint32

	// The secure sum the server announced in its first Welcome ("" for none): a later Welcome
	// (a reconnect) must announce the same protocol, or the client leaves. Its parameters may
	// change (a resumed server draws a new run id); the client's floors (Policy, and those of its
	// protocol half) judge them, and the half is rebuilt from them.
	announced   string
	welcomed    bool
	protoName   string
	protoParams []byte
	protocol    fl.SecureSum
	sumRound    int
	sumID       fl.ClientID
	sum         fl.SumClient
}

// clientTask is a task whose payload has arrived, waiting for the worker.
type clientTask struct {
	task    *shoalv1.Task
	payload []byte
	ctx     context.Context
	cancel  context.CancelFunc
}

type clientOut struct {
	msg     *shoalv1.ClientMsg
	payload []byte
	hdr     *shoalv1.Header
}

// session runs one connection: hello, welcome, then tasks until it ends.
func (rt *runtime) session(ctx context.Context, api shoalv1.FederationClient) (welcomed, complete bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := api.Connect(sctx)
	if err != nil {
		return false, false, err
	}
	if err := stream.Send(&shoalv1.ClientMsg{Body: &shoalv1.ClientMsg_Hello{Hello: &shoalv1.Hello{
		ProtocolVersion: ProtocolVersion, Name: rt.cfg.Name, Model: rt.cfg.Model.proto()}}}); err != nil {
		return false, false, recvErr(stream, err)
	}
	first, err := stream.Recv()
	if err != nil {
		return false, false, err
	}
	w := first.GetWelcome()
	if w == nil {
		return false, false, errors.New("server did not start with a welcome")
	}
	if w.GetProtocolVersion() != ProtocolVersion || w.GetChunkSize() == 0 || w.GetChunkSize() > 16<<20 || w.GetHeartbeatMillis() == 0 {
		return false, false, fmt.Errorf("unusable welcome: version %d, chunk size %d, heartbeat %d ms",
			w.GetProtocolVersion(), w.GetChunkSize(), w.GetHeartbeatMillis())
	}
	log := rt.log.With("run", w.GetRunId(), "as", w.GetClientName())
	if err := rt.cfg.Policy.CheckRun(w.GetSecureSum()); err != nil {
		_ = stream.CloseSend()
		return true, false, err
	}
	if err := rt.checkAnnouncement(w); err != nil {
		_ = stream.CloseSend()
		return true, false, err
	}
	if err := rt.adopt(w); err != nil {
		_ = stream.CloseSend()
		return true, false, err
	}
	if !rt.welcomed {
		rt.announced, rt.welcomed = w.GetSecureSum(), true
	}
	log.Info("connected", "server", rt.cfg.Server)
	if err := rt.setProtocol(w); err != nil {
		log.Warn("secure rounds will be refused", "err", err)
	}
	heartbeat := time.Duration(w.GetHeartbeatMillis()) * time.Millisecond
	chunkSize := int(w.GetChunkSize())

	out := make(chan clientOut, 64)
	queue := make(chan *clientTask, 16)
	var wg sync.WaitGroup
	sessionErr := make(chan error, 3)
	wg.Go(func() { // writer
		for {
			select {
			case o := <-out:
				if err := stream.Send(o.msg); err != nil {
					sessionErr <- err
					cancel()
					return
				}
				err := chunks(o.hdr, o.payload, chunkSize, func(c *shoalv1.Chunk) error {
					return stream.Send(&shoalv1.ClientMsg{Body: &shoalv1.ClientMsg_Chunk{Chunk: c}})
				})
				if err != nil {
					sessionErr <- err
					cancel()
					return
				}
			case <-sctx.Done():
				return
			}
		}
	})
	emit := func(o clientOut) {
		select {
		case out <- o:
		case <-sctx.Done():
		}
	}
	wg.Go(func() { // heartbeats
		tick := time.NewTicker(heartbeat)
		defer tick.Stop()
		var seq uint64
		for {
			select {
			case <-tick.C:
				seq++
				emit(clientOut{msg: &shoalv1.ClientMsg{Body: &shoalv1.ClientMsg_Heartbeat{Heartbeat: &shoalv1.Heartbeat{Seq: seq}}}})
			case <-sctx.Done():
				return
			}
		}
	})
	wg.Go(func() { // worker: one task at a time, in order
		for {
			select {
			case t := <-queue:
				if t.ctx.Err() != nil {
					continue // cancelled while waiting
				}
				res, payload := rt.work(t, log)
				t.cancel()
				emit(clientOut{msg: &shoalv1.ClientMsg{Body: &shoalv1.ClientMsg_Result{Result: res}}, payload: payload, hdr: res.GetHeader()})
			case <-sctx.Done():
				return
			}
		}
	})
	defer wg.Wait()
	defer cancel()

	// Receive loop: reassemble tasks, apply cancels, watch the server's liveness.
	msgs := make(chan *shoalv1.ServerMsg)
	recvDone := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvDone <- err
				return
			}
			select {
			case msgs <- m:
			case <-sctx.Done():
				recvDone <- sctx.Err()
				return
			}
		}
	}()
	running := map[uint64]*clientTask{}
	var asm *assembly
	var asmTask *shoalv1.Task
	silence := time.NewTimer(3 * heartbeat)
	defer silence.Stop()
	for {
		select {
		case err := <-sessionErr:
			return true, false, err
		case err := <-recvDone:
			if errors.Is(err, io.EOF) {
				err = errors.New("server ended the session")
			}
			return true, false, err
		case <-silence.C:
			return true, false, fmt.Errorf("server silent for %v", 3*heartbeat)
		case <-ctx.Done():
			return true, false, ctx.Err()
		case m := <-msgs:
			silence.Reset(3 * heartbeat)
			switch b := m.GetBody().(type) {
			case *shoalv1.ServerMsg_Heartbeat:
			case *shoalv1.ServerMsg_Goodbye:
				log.Info("server said goodbye", "reason", b.Goodbye.GetReason(), "run_complete", b.Goodbye.GetRunComplete())
				if ms := b.Goodbye.GetRetryAfterMillis(); ms > 0 && !b.Goodbye.GetRunComplete() {
					return true, false, steered{after: time.Duration(ms) * time.Millisecond, reason: b.Goodbye.GetReason()}
				}
				return true, b.Goodbye.GetRunComplete(), errors.New("server said goodbye: " + b.Goodbye.GetReason())
			case *shoalv1.ServerMsg_Cancel:
				h := headerOf(b.Cancel.GetHeader())
				if t := running[h.taskID]; t != nil {
					t.cancel()
					delete(running, h.taskID)
				}
				if asm != nil && asm.hdr.taskID == h.taskID {
					asm, asmTask = nil, nil
				}
			case *shoalv1.ServerMsg_Task:
				if asm != nil {
					log.Warn("task arrived before the previous payload was complete; dropping the previous", "task", asm.hdr)
				}
				asm, asmTask = nil, nil
				t := b.Task
				h := headerOf(t.GetHeader())
				if h.run != w.GetRunId() {
					return true, false, fmt.Errorf("task of run %q on a session of run %q", h.run, w.GetRunId())
				}
				if rt.seen[h.taskID] {
					log.Warn("replayed task ignored", "task", h)
					continue
				}
				rt.seen[h.taskID] = true
				// The server is authenticated and the size bounded by MaxPayload: preallocate.
				a, err := newAssembly(h, t.GetPayload(), rt.cfg.MaxPayload, chunkSize, true)
				if err != nil {
					return true, false, err
				}
				if a.done() {
					rt.enqueue(sctx, t, nil, running, queue)
				} else {
					asm, asmTask = a, t
				}
			case *shoalv1.ServerMsg_Chunk:
				if asm == nil {
					log.Debug("chunk of a withdrawn task dropped", "task", headerOf(b.Chunk.GetHeader()))
					continue
				}
				done, err := asm.add(b.Chunk)
				if err != nil {
					return true, false, err
				}
				if done {
					rt.enqueue(sctx, asmTask, asm.bytes(), running, queue)
					asm, asmTask = nil, nil
				}
			default:
				return true, false, errors.New("unexpected message from the server")
			}
		}
	}
}

func recvErr(stream grpc.BidiStreamingClient[shoalv1.ClientMsg, shoalv1.ServerMsg], err error) error {
	if errors.Is(err, io.EOF) {
		if _, rerr := stream.Recv(); rerr != nil {
			return rerr
		}
	}
	return err
}

func (rt *runtime) enqueue(ctx context.Context, t *shoalv1.Task, payload []byte, running map[uint64]*clientTask, queue chan<- *clientTask) {
	tctx, cancel := context.WithCancel(ctx)
	ct := &clientTask{task: t, payload: payload, ctx: tctx, cancel: cancel}
	running[t.GetHeader().GetTaskId()] = ct
	for id, r := range running {
		if r.ctx.Err() != nil {
			delete(running, id)
		}
	}
	select {
	case queue <- ct:
	default:
		cancel()
		rt.log.Warn("task queue full; task dropped", "task", headerOf(t.GetHeader()))
	}
}

// checkAnnouncement holds the server to the secure-sum protocol of its first Welcome: a
// reconnect that drops it or swaps it for another would otherwise get, task by task, what the
// first announcement ruled out, such as an update in the clear.
func (rt *runtime) checkAnnouncement(w *shoalv1.Welcome) error {
	if !rt.welcomed || w.GetSecureSum() == rt.announced {
		return nil
	}
	return fmt.Errorf("%w: the server announced secure sum %q, and on reconnecting announces %q",
		fl.ErrPolicy, rt.announced, w.GetSecureSum())
}

// adopt checks the model the server announced against the client's and hands it to Adopt.
func (rt *runtime) adopt(w *shoalv1.Welcome) error {
	if rt.cfg.Adopt == nil {
		return nil
	}
	run, err := modelSpecFrom(w.GetModel())
	switch {
	case err != nil:
		return fmt.Errorf("%w: %v", ErrIncompatible, err)
	case run == nil:
		return fmt.Errorf("%w: the server announced no model, so this client cannot check that it trains the run's", ErrIncompatible)
	}
	if rt.cfg.Model != nil {
		if err := run.CheckClient(*rt.cfg.Model); err != nil {
			return err
		}
	}
	if err := rt.cfg.Adopt(*run); err != nil {
		return fmt.Errorf("%w: the run's model %s: %v", ErrIncompatible, run, err)
	}
	return nil
}

func (rt *runtime) setProtocol(w *shoalv1.Welcome) error {
	name, params := w.GetSecureSum(), w.GetSecureSumParams()
	if name == "" || name == rt.protoName && rt.protocol != nil && bytes.Equal(params, rt.protoParams) {
		return nil
	}
	if rt.cfg.SecureSum == nil {
		return fmt.Errorf("the run uses secure sum %q, and this client has no secure-sum support", name)
	}
	p, err := rt.cfg.SecureSum(name, params)
	if err != nil {
		return fmt.Errorf("secure sum %q: %w", name, err)
	}
	rt.protoName, rt.protocol, rt.protoParams = name, p, params
	return nil
}

// work does one task and returns its result (an error result when it failed).
func (rt *runtime) work(t *clientTask, log *slog.Logger) (*shoalv1.Result, []byte) {
	task := t.task
	res := &shoalv1.Result{Header: task.GetHeader(), Kind: task.GetKind()}
	fail := func(err error) (*shoalv1.Result, []byte) {
		log.Warn("task failed", "kind", kindName(task.GetKind()), "task", headerOf(task.GetHeader()), "err", err)
		res.Error = err.Error()
		return res, nil
	}
	round := int(task.GetHeader().GetRound())
	id := fl.ClientID(task.GetClientId())
	log.Debug("task", "kind", kindName(task.GetKind()), "round", round, "stage", task.GetHeader().GetStage(), "bytes", len(t.payload))
	if rt.cfg.OnTask != nil {
		rt.cfg.OnTask(kindName(task.GetKind()), round, int(task.GetHeader().GetStage()))
	}
	switch task.GetKind() {
	case shoalv1.TaskKind_TASK_KIND_FIT:
		if task.GetHeader().GetRound() < rt.lastRound {
			return fail(fmt.Errorf("fit task for round %d after round %d: stale", round, rt.lastRound))
		}
		rt.lastRound = task.GetHeader().GetRound()
		params, err := bytesFloats(t.payload)
		if err != nil {
			return fail(err)
		}
		ins := fl.FitIns{Round: round, Params: params, Config: fitConfigFrom(task.GetFit()), Secure: task.GetSecure()}
		if err := ins.Config.Validate(); err != nil {
			return fail(fmt.Errorf("fit configuration: %w", err))
		}
		if err := rt.cfg.Policy.CheckFit(ins, rt.announced); err != nil {
			return fail(err) // the client leaves the round; nothing of its data was touched
		}
		if ins.Secure && rt.protocol == nil {
			return fail(errors.New("secure round, but this client has no secure-sum protocol for the run"))
		}
		local, err := rt.cfg.Local(round, id)
		if err != nil {
			return fail(err)
		}
		fr, err := fl.FitSafely(t.ctx, local, ins)
		if err != nil {
			return fail(err)
		}
		res.NumExamples, res.Loss, res.Unclipped = int64(fr.NumExamples), fr.Loss, fr.Unclipped
		if ins.Secure {
			in := fl.SumInput{Update: fr.Update, Weight: ins.Config.Weight(fr.NumExamples), Unclipped: fr.Unclipped}
			sc, err := rt.protocol.NewClient(round, id, in)
			if err != nil {
				return fail(fmt.Errorf("secure sum input: %w", err))
			}
			rt.sum, rt.sumRound, rt.sumID = sc, round, id
			res.Payload = &shoalv1.Payload{}
			return res, nil
		}
		payload := floatBytes(fr.Update)
		res.Payload = &shoalv1.Payload{Size: uint64(len(payload)), Crc32C: checksum(payload)}
		return res, payload
	case shoalv1.TaskKind_TASK_KIND_EVALUATE:
		params, err := bytesFloats(t.payload)
		if err != nil {
			return fail(err)
		}
		local, err := rt.cfg.Local(0, id)
		if err != nil {
			return fail(err)
		}
		er, err := local.Evaluate(t.ctx, params)
		if err != nil {
			return fail(err)
		}
		res.Loss, res.Accuracy, res.NumExamples = er.Loss, er.Accuracy, int64(er.NumExamples)
		res.Payload = &shoalv1.Payload{}
		return res, nil
	case shoalv1.TaskKind_TASK_KIND_EXCHANGE:
		if rt.sum == nil || rt.sumRound != round || rt.sumID != id {
			// Addressed without an input of its own this round (protocol setup, a committee
			// member not sampled): the protocol gives it a half with an empty input.
			if rt.protocol == nil {
				return fail(errors.New("secure-sum message, but this client has no secure-sum protocol for the run"))
			}
			sc, err := rt.protocol.NewClient(round, id, fl.SumInput{})
			if err != nil {
				return fail(fmt.Errorf("secure sum: %w", err))
			}
			rt.sum, rt.sumRound, rt.sumID = sc, round, id
		}
		reply, err := fl.HandleSafely(rt.sum, t.payload)
		if err != nil {
			return fail(fmt.Errorf("secure sum stage %d: %w", task.GetHeader().GetStage(), err))
		}
		res.Payload = &shoalv1.Payload{Size: uint64(len(reply)), Crc32C: checksum(reply)}
		return res, reply
	}
	return fail(fmt.Errorf("unknown task kind %d", task.GetKind()))
}
