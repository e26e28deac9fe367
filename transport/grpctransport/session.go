package grpctransport

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"shoal/fl"
	shoalv1 "shoal/proto/shoal/v1"
)

var cryptoRead = rand.Read

// sendQueue bounds the messages waiting to go out on one session; a client that lets it fill
// up (it stopped reading) is cut off.
const sendQueue = 64

// outbound is one message to send, followed by payload as chunks under hdr unless t has
// finished (been cancelled) in the meantime.
type outbound struct {
	msg     *shoalv1.ServerMsg
	payload []byte
	t       *task
}

// session is one connected client.
type session struct {
	srv      *Server
	ctx      context.Context // the stream's: its peer carries the TLS state, for Revocation.Check
	name     string
	serial   uint64
	log      *slog.Logger
	out      chan outbound
	done     chan struct{}
	once     sync.Once
	err      error
	lastSeen atomic.Int64

	mu    sync.Mutex
	tasks map[uint64]*task
	// The payload being received, for asmTask (nil: an answer nobody waits for, discarded).
	asm     *assembly
	asmTask *task
	asmRes  *shoalv1.Result
}

// Connect is one client's session (the Federation service).
func (s *Server) Connect(stream grpc.BidiStreamingServer[shoalv1.ClientMsg, shoalv1.ServerMsg]) error {
	ctx := stream.Context()
	hello, err := s.awaitHello(stream)
	if err != nil {
		s.cfg.Metrics.refuse("hello")
		return err
	}
	if v := hello.GetProtocolVersion(); v != ProtocolVersion {
		s.cfg.Metrics.refuse("version")
		return status.Errorf(codes.FailedPrecondition, "protocol version %d, this server speaks %d", v, ProtocolVersion)
	}
	name, err := s.cfg.Authenticate(ctx, hello)
	if err == nil {
		err = validName(name)
	}
	if err != nil {
		s.cfg.Metrics.refuse("unauthenticated")
		s.log.Warn("client refused", "err", err)
		return status.Errorf(codes.Unauthenticated, "client refused: %v", err)
	}
	if err := s.revoked(ctx, name); err != nil {
		s.cfg.Metrics.refuse(refusalReason(err))
		level := slog.LevelWarn
		if errors.Is(err, errRevocationUnusable) {
			level = slog.LevelDebug // said once, as an error, when the list became unusable
		}
		s.log.Log(ctx, level, "client refused", "client", name, "err", err)
		return revocationStatus(err)
	}
	if s.cfg.Admit != nil {
		if err := s.cfg.Admit(ctx, name); err != nil {
			s.cfg.Metrics.refuse("not-admitted")
			s.log.Warn("client not admitted", "client", name, "err", err)
			return status.Errorf(codes.PermissionDenied, "client %s not admitted: %v", name, err)
		}
	}
	if err := s.checkModel(hello); err != nil {
		s.cfg.Metrics.refuse("model")
		s.log.Warn("client refused", "client", name, "err", err)
		return status.Errorf(codes.FailedPrecondition, "client %s refused: %v", name, err)
	}
	if s.cfg.Steer != nil {
		s.mu.Lock()
		connected := len(s.sessions)
		s.mu.Unlock()
		if d := s.cfg.Steer(name, connected); d > 0 {
			return s.steer(stream, name, d)
		}
	}
	ss := &session{srv: s, ctx: ctx, name: name, serial: s.nextConn.Add(1), out: make(chan outbound, sendQueue),
		done: make(chan struct{}), tasks: map[uint64]*task{}}
	ss.log = s.log.With("client", name, "session", ss.serial)
	ss.lastSeen.Store(time.Now().UnixNano())
	// The welcome is queued before the session becomes visible to the engine: once joined, a
	// round may queue a task on it at once, and the client must see the welcome first.
	ss.send(&shoalv1.ServerMsg{Body: &shoalv1.ServerMsg_Welcome{Welcome: &shoalv1.Welcome{
		ProtocolVersion: ProtocolVersion, RunId: s.cfg.RunID, ClientName: name, ChunkSize: uint32(s.cfg.ChunkSize),
		MaxResultPayload: s.maxResult(), HeartbeatMillis: uint32(s.cfg.Heartbeat.Milliseconds()),
		SecureSum: s.cfg.SecureSum, SecureSumParams: s.cfg.SecureSumParams, Model: s.cfg.Model.proto(),
	}}}, nil, nil)
	if !s.join(ss) {
		return status.Error(codes.Unavailable, "server is shutting down")
	}
	// A heartbeat may have refreshed the revocation view between the check above and the
	// join, and missed this session: check again, now that the next heartbeat will see it.
	if err := s.revoked(ctx, name); err != nil {
		s.cfg.Metrics.refuse(refusalReason(err))
		ss.close(fmt.Errorf("%w: %w", fl.ErrDropped, err))
	}
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); ss.writeLoop(stream) }()
	ss.log.Info("client connected")

	// Receive in a goroutine of its own, so that a session closed from elsewhere (heartbeat
	// deadline, replacement, a full send queue) ends the handler, which ends the stream.
	go func() {
		for {
			msg, err := stream.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = errors.New("client closed the session")
				}
				ss.close(fmt.Errorf("%w: %v", fl.ErrDropped, err))
				return
			}
			if err := ss.handle(msg); err != nil {
				if errors.Is(err, errProtocol) {
					s.cfg.Metrics.refuse("protocol")
					ss.log.Warn("client cut off", "err", err)
				}
				ss.close(err)
				return
			}
		}
	}()
	<-ss.done
	s.leave(ss)
	// A writer blocked on a client that stopped reading is abandoned after a grace period;
	// the stream's end unblocks it.
	select {
	case <-writerDone:
	case <-time.After(2 * s.cfg.Heartbeat):
	}
	if errors.Is(ss.err, errProtocol) {
		return status.Error(codes.InvalidArgument, ss.err.Error())
	}
	return revocationStatus(ss.err)
}

// steer welcomes a client and at once says goodbye, asking it to come back after d (pace
// steering): it never joins the roster.
func (s *Server) steer(stream grpc.BidiStreamingServer[shoalv1.ClientMsg, shoalv1.ServerMsg], name string, d time.Duration) error {
	s.cfg.Metrics.refuse("steered")
	s.log.Debug("client steered away", "client", name, "retry_after", d)
	ms := uint32(min(d.Milliseconds(), math.MaxUint32))
	welcome := &shoalv1.ServerMsg{Body: &shoalv1.ServerMsg_Welcome{Welcome: &shoalv1.Welcome{
		ProtocolVersion: ProtocolVersion, RunId: s.cfg.RunID, ClientName: name, ChunkSize: uint32(s.cfg.ChunkSize),
		MaxResultPayload: s.maxResult(), HeartbeatMillis: uint32(s.cfg.Heartbeat.Milliseconds()),
		SecureSum: s.cfg.SecureSum, SecureSumParams: s.cfg.SecureSumParams, Model: s.cfg.Model.proto(),
	}}}
	if err := stream.Send(welcome); err != nil {
		return err
	}
	return stream.Send(&shoalv1.ServerMsg{Body: &shoalv1.ServerMsg_Goodbye{Goodbye: &shoalv1.Goodbye{
		Reason: "enough devices for now: come back later (pace steering)", RetryAfterMillis: ms}}})
}

// Dismiss asks the connected client with roster id to leave and come back after d (pace
// steering once it has taken part: another device takes its place); false if it is not
// connected.
func (s *Server) Dismiss(id fl.ClientID, d time.Duration) bool {
	s.mu.Lock()
	var ss *session
	if id >= 0 && int(id) < len(s.order) {
		ss = s.sessions[s.order[id]]
	}
	s.mu.Unlock()
	if ss == nil || d <= 0 {
		return false
	}
	ss.send(&shoalv1.ServerMsg{Body: &shoalv1.ServerMsg_Goodbye{Goodbye: &shoalv1.Goodbye{
		Reason: "thank you: come back later (pace steering)", RetryAfterMillis: uint32(min(d.Milliseconds(), math.MaxUint32))}}}, nil, nil)
	return true
}

// errRevoked and errRevocationUnusable are why the revocation check ended or refused a
// session: the client's credential was withdrawn, or the revocation view is unusable and
// every client is refused (fail closed).
var (
	errRevoked            = errors.New("credential revoked")
	errRevocationUnusable = errors.New("revocation list unusable, refusing every client")
)

// checkModel refuses a client whose Hello describes a model the run does not train; a Hello
// without a description passes (the client then checks the Welcome's).
func (s *Server) checkModel(hello *shoalv1.Hello) error {
	if s.cfg.Model == nil {
		return nil
	}
	local, err := modelSpecFrom(hello.GetModel())
	if err != nil || local == nil {
		return err
	}
	return s.cfg.Model.CheckClient(*local)
}

// revoked returns why the client name of the stream ctx may not (any longer) have a session
// (wrapping errRevoked or errRevocationUnusable), or nil.
func (s *Server) revoked(ctx context.Context, name string) error {
	if s.cfg.Revocation == nil {
		return nil
	}
	s.mu.Lock()
	unusable := s.revErr
	s.mu.Unlock()
	if unusable != nil {
		return fmt.Errorf("%w: %v", errRevocationUnusable, unusable)
	}
	if err := s.cfg.Revocation.Check(ctx, name); err != nil {
		return fmt.Errorf("%w: %v", errRevoked, err)
	}
	return nil
}

// refreshRevocation updates the revocation view (at the start of serving and at every
// heartbeat tick) and logs when it becomes unusable or usable again.
func (s *Server) refreshRevocation() {
	if s.cfg.Revocation == nil {
		return
	}
	err := s.cfg.Revocation.Refresh()
	s.mu.Lock()
	prev := s.revErr
	s.revErr = err
	s.mu.Unlock()
	switch {
	case err != nil && prev == nil:
		s.log.Error("revocation list unusable: closing every session and refusing every client until it is mended", "err", err)
	case err == nil && prev != nil:
		s.log.Warn("revocation list usable again: accepting clients", "was", prev)
	}
}

// revocationStatus is the status a session ended or refused by err returns to the client: a
// revoked client is refused for good, one refused for an unusable list may retry; nil for
// other errors.
func revocationStatus(err error) error {
	switch {
	case errors.Is(err, errRevoked):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, errRevocationUnusable):
		return status.Error(codes.Unavailable, err.Error())
	}
	return nil
}

func refusalReason(err error) string {
	if errors.Is(err, errRevocationUnusable) {
		return "revocation-list"
	}
	return "revoked"
}

// awaitHello receives the session's first message, which must be a Hello, within three
// heartbeat intervals.
func (s *Server) awaitHello(stream grpc.BidiStreamingServer[shoalv1.ClientMsg, shoalv1.ServerMsg]) (*shoalv1.Hello, error) {
	type first struct {
		msg *shoalv1.ClientMsg
		err error
	}
	got := make(chan first, 1)
	go func() {
		m, err := stream.Recv()
		got <- first{m, err}
	}()
	select {
	case f := <-got:
		if f.err != nil {
			return nil, f.err
		}
		h := f.msg.GetHello()
		if h == nil {
			return nil, status.Error(codes.InvalidArgument, "the first message of a session must be a hello")
		}
		return h, nil
	case <-time.After(3 * s.cfg.Heartbeat):
		return nil, status.Error(codes.DeadlineExceeded, "no hello")
	case <-s.closing:
		return nil, status.Error(codes.Unavailable, "server is shutting down")
	}
}

// join registers a session, replacing an older session of the same client.
func (s *Server) join(ss *session) bool {
	s.mu.Lock()
	select {
	case <-s.closing:
		s.mu.Unlock()
		return false
	default:
	}
	old := s.sessions[ss.name]
	s.sessions[ss.name] = ss
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	s.book.joined(ss)
	if old != nil {
		old.close(fmt.Errorf("%w: replaced by a new session of the same client", fl.ErrDropped))
	} else {
		s.cfg.Metrics.connectedDelta(1)
	}
	return true
}

func (s *Server) leave(ss *session) {
	s.mu.Lock()
	current := s.sessions[ss.name] == ss
	s.book.left(ss, current)
	if current {
		delete(s.sessions, ss.name)
		close(s.changed)
		s.changed = make(chan struct{})
		s.cfg.Metrics.connectedDelta(-1)
	}
	s.mu.Unlock()
	ss.log.Info("client disconnected", "reason", ss.err)
}

// start registers t on the session and queues its message and payload.
func (ss *session) start(t *task, msg *shoalv1.ServerMsg, payload []byte) {
	t.sess = ss
	ss.mu.Lock()
	if ss.closed() {
		ss.mu.Unlock()
		t.finish(answer{err: fmt.Errorf("%w: connection lost: %v", fl.ErrDropped, ss.err)})
		return
	}
	ss.tasks[t.hdr.taskID] = t
	ss.mu.Unlock()
	ss.send(msg, payload, t)
}

func (ss *session) forget(id uint64) {
	ss.mu.Lock()
	delete(ss.tasks, id)
	ss.mu.Unlock()
}

// send queues a message without blocking; a full queue means the client is not reading, and
// it is cut off.
func (ss *session) send(msg *shoalv1.ServerMsg, payload []byte, t *task) {
	select {
	case <-ss.done:
		return
	default:
	}
	select {
	case ss.out <- outbound{msg: msg, payload: payload, t: t}:
	default:
		ss.close(fmt.Errorf("%w: client is not reading (send queue full)", fl.ErrDropped))
	}
}

func (ss *session) goodbye(reason string, complete bool) {
	ss.send(&shoalv1.ServerMsg{Body: &shoalv1.ServerMsg_Goodbye{Goodbye: &shoalv1.Goodbye{Reason: reason, RunComplete: complete}}}, nil, nil)
}

func (ss *session) writeLoop(stream grpc.BidiStreamingServer[shoalv1.ClientMsg, shoalv1.ServerMsg]) {
	for {
		select {
		case o := <-ss.out:
			if err := stream.Send(o.msg); err != nil {
				ss.close(fmt.Errorf("%w: send: %v", fl.ErrDropped, err))
				return
			}
			if len(o.payload) == 0 {
				if o.msg.GetGoodbye() != nil {
					return
				}
				continue
			}
			err := chunks(o.t.hdr.proto(), o.payload, ss.srv.cfg.ChunkSize, func(c *shoalv1.Chunk) error {
				if o.t.finished.Load() {
					return errSkip
				}
				return stream.Send(&shoalv1.ServerMsg{Body: &shoalv1.ServerMsg_Chunk{Chunk: c}})
			})
			if err != nil && !errors.Is(err, errSkip) {
				ss.close(fmt.Errorf("%w: send: %v", fl.ErrDropped, err))
				return
			}
		case <-ss.done:
			return
		}
	}
}

var errSkip = errors.New("task withdrawn")

// heartbeats runs for the server's lifetime: one ticker for all sessions (not a goroutine per
// connection) refreshes the revocation view and closes the sessions it no longer admits,
// sends heartbeats and cuts off clients silent for three intervals.
func (s *Server) heartbeats() {
	interval := s.cfg.Heartbeat
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var seq uint64
	for {
		select {
		case <-tick.C:
		case <-s.closing:
			return
		}
		seq++
		// Revocation first, and before the sessions are listed: a session that joins after
		// the listing checks itself against this refresh (see Connect).
		s.refreshRevocation()
		s.mu.Lock()
		sessions := make([]*session, 0, len(s.sessions))
		for _, ss := range s.sessions {
			sessions = append(sessions, ss)
		}
		s.mu.Unlock()
		for _, ss := range sessions {
			if err := s.revoked(ss.ctx, ss.name); err != nil {
				s.cfg.Metrics.refuse(refusalReason(err))
				ss.log.Warn("session closed", "err", err)
				ss.close(fmt.Errorf("%w: %w", fl.ErrDropped, err))
				continue
			}
			if silent := time.Since(time.Unix(0, ss.lastSeen.Load())); silent > 3*interval {
				s.cfg.Metrics.refuse("heartbeat")
				ss.close(fmt.Errorf("%w: no message for %v", fl.ErrDropped, silent.Round(time.Millisecond)))
				continue
			}
			ss.send(&shoalv1.ServerMsg{Body: &shoalv1.ServerMsg_Heartbeat{Heartbeat: &shoalv1.Heartbeat{Seq: seq}}}, nil, nil)
		}
	}
}

func (ss *session) closed() bool {
	select {
	case <-ss.done:
		return true
	default:
		return false
	}
}

// close ends the session once: every outstanding task fails.
func (ss *session) close(err error) {
	ss.once.Do(func() {
		ss.mu.Lock()
		ss.err = err
		close(ss.done)
		tasks := ss.tasks
		ss.tasks = map[uint64]*task{}
		ss.mu.Unlock()
		for _, t := range tasks {
			t.finish(answer{err: fmt.Errorf("%w: connection lost: %v", fl.ErrDropped, err)})
		}
	})
}

// handle processes one message from the client; an error closes the session.
func (ss *session) handle(m *shoalv1.ClientMsg) error {
	ss.lastSeen.Store(time.Now().UnixNano())
	switch b := m.GetBody().(type) {
	case *shoalv1.ClientMsg_Heartbeat:
		return nil
	case *shoalv1.ClientMsg_Result:
		return ss.onResult(b.Result)
	case *shoalv1.ClientMsg_Chunk:
		return ss.onChunk(b.Chunk)
	case *shoalv1.ClientMsg_Hello:
		return violation("hello in the middle of a session")
	default:
		return violation("empty message")
	}
}

func (ss *session) onResult(r *shoalv1.Result) error {
	if ss.asm != nil {
		return violation("result while the payload of %s is incomplete", ss.asm.hdr)
	}
	h := headerOf(r.GetHeader())
	ss.mu.Lock()
	t := ss.tasks[h.taskID]
	ss.mu.Unlock()
	chunk := ss.srv.cfg.ChunkSize
	if t == nil {
		// Stale (the task was cancelled or timed out), replayed, or never ours: refused. Its
		// payload is still read, within bounds, and dropped.
		ss.srv.cfg.Metrics.refuse("stale")
		ss.log.Debug("answer to no outstanding task refused", "header", h)
		limit := max(ss.srv.maxResult(), 4*uint64(max(0, ss.srv.lastDim.Load())))
		a, err := newAssembly(h, r.GetPayload(), limit, chunk, false)
		if err != nil {
			return err
		}
		if !a.done() {
			a.discard = true
			ss.asm, ss.asmTask, ss.asmRes = a, nil, nil
		}
		return nil
	}
	if h != t.hdr || r.GetKind() != t.kind {
		return violation("answer %s (%s) does not match its task %s (%s)", h, kindName(r.GetKind()), t.hdr, kindName(t.kind))
	}
	size := r.GetPayload().GetSize()
	if r.GetError() != "" {
		if size != 0 {
			return violation("a failed task's answer carries a payload")
		}
		t.finish(answer{err: fmt.Errorf("client failed the task: %s", truncate(r.GetError(), 512))})
		return nil
	}
	limit := t.limit
	if t.exact >= 0 {
		if size != uint64(t.exact) {
			return violation("%s answer of %d bytes, expected %d", kindName(t.kind), size, t.exact)
		}
		limit = size
	}
	a, err := newAssembly(h, r.GetPayload(), limit, chunk, t.exact > 0)
	if err != nil {
		return err
	}
	if a.done() {
		if r.GetPayload().GetCrc32C() != 0 {
			return violation("empty payload with a non-zero checksum")
		}
		t.finish(answer{res: r})
		return nil
	}
	ss.asm, ss.asmTask, ss.asmRes = a, t, r
	return nil
}

func (ss *session) onChunk(c *shoalv1.Chunk) error {
	if ss.asm == nil {
		return violation("chunk of %s with no payload announced", headerOf(c.GetHeader()))
	}
	if t := ss.asmTask; t != nil && t.finished.Load() && !ss.asm.discard {
		ss.asm.discard, ss.asm.buf = true, nil // nobody waits for it any more
	}
	done, err := ss.asm.add(c)
	if err != nil {
		return err
	}
	if done {
		if ss.asmTask != nil && !ss.asm.discard {
			ss.asmTask.finish(answer{res: ss.asmRes, payload: ss.asm.bytes()})
		}
		ss.asm, ss.asmTask, ss.asmRes = nil, nil, nil
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// naturalCompare orders names with digit runs compared by value: client-2 before client-10.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digitPrefix(a), digitPrefix(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if len(na) != len(nb) {
				return len(na) - len(nb)
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			if da != db {
				return da - db
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digitPrefix(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

func fitConfigProto(c fl.FitConfig) *shoalv1.FitConfig {
	return &shoalv1.FitConfig{
		Epochs: uint32(c.Epochs), BatchSize: uint32(c.BatchSize), Lr: c.LR, Momentum: c.Momentum,
		WeightDecay: c.WeightDecay, ProxMu: c.ProxMu, ClipNorm: c.ClipNorm, PerLayerClip: c.PerLayerClip,
		LocalNoiseStd: c.LocalNoiseStd, UnitWeights: c.UnitWeights,
	}
}

func fitConfigFrom(c *shoalv1.FitConfig) fl.FitConfig {
	return fl.FitConfig{
		Epochs: int(c.GetEpochs()), BatchSize: int(c.GetBatchSize()), LR: c.GetLr(), Momentum: c.GetMomentum(),
		WeightDecay: c.GetWeightDecay(), ProxMu: c.GetProxMu(), ClipNorm: c.GetClipNorm(), PerLayerClip: c.GetPerLayerClip(),
		LocalNoiseStd: c.GetLocalNoiseStd(), UnitWeights: c.GetUnitWeights(),
	}
}
