package grpctransport

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"

	"shoal/fl"
	shoalv1 "shoal/proto/shoal/v1"
)

// Authenticator names the client of a new session: from its verified TLS certificate, or, on
// an explicitly insecure server, from its Hello.
type Authenticator func(ctx context.Context, hello *shoalv1.Hello) (name string, err error)

// TLSAuthenticator names a client by its verified certificate; peerName extracts the name (for
// example pki.PeerName). A Hello naming someone else is refused.
func TLSAuthenticator(peerName func(tls.ConnectionState) (string, error)) Authenticator {
	return func(ctx context.Context, hello *shoalv1.Hello) (string, error) {
		state, err := tlsState(ctx)
		if err != nil {
			return "", err
		}
		name, err := peerName(state)
		if err != nil {
			return "", err
		}
		if hello.GetName() != "" && hello.GetName() != name {
			return "", fmt.Errorf("certificate names %q, hello claims %q", name, hello.GetName())
		}
		return name, nil
	}
}

// tlsState is the TLS state of the connection a stream's ctx belongs to.
func tlsState(ctx context.Context) (tls.ConnectionState, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return tls.ConnectionState{}, errors.New("no peer information")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return tls.ConnectionState{}, errors.New("connection is not TLS")
	}
	return info.State, nil
}

// Revocation is the server's live view of withdrawn client credentials (ServerConfig.Revocation).
type Revocation interface {
	// Refresh brings the view up to date (re-reads a revocation list that changed). The server
	// calls it when it starts serving and then once per heartbeat interval, never more often.
	// An error means the view is unusable (a revocation list missing or unreadable): every
	// session is closed and new ones are refused until a later Refresh succeeds.
	Refresh() error
	// Check returns why the client of a session may no longer take part (revoked), or nil.
	// ctx is the session's stream context (its peer carries the TLS state), name the
	// authenticated name. It must answer from the view, without blocking: the server calls
	// it for every session at each heartbeat, and for each new session.
	Check(ctx context.Context, name string) error
}

// CertRevocations is a certificate revocation list that may change while the server runs,
// such as a *pki.Revocations.
type CertRevocations interface {
	Refresh() error
	CheckConn(tls.ConnectionState) error
}

// TLSRevocation checks each session by the client certificate of its TLS connection against
// list (for example a pki.Revocations shared with the TLS configuration's handshake check).
func TLSRevocation(list CertRevocations) Revocation { return tlsRevocation{list} }

type tlsRevocation struct{ list CertRevocations }

func (r tlsRevocation) Refresh() error { return r.list.Refresh() }

func (r tlsRevocation) Check(ctx context.Context, _ string) error {
	state, err := tlsState(ctx)
	if err != nil {
		return err
	}
	return r.list.CheckConn(state)
}

// InsecureAuthenticator takes the client's word for its name: only for --insecure runs.
func InsecureAuthenticator() Authenticator {
	return func(_ context.Context, hello *shoalv1.Hello) (string, error) { return hello.GetName(), nil }
}

// ServerConfig configures a Server.
type ServerConfig struct {
	// RunID names the run; every message carries it.
	RunID string
	// Authenticate names each new client (required).
	Authenticate Authenticator
	// Admit, if set, may refuse a named client (unknown, revoked) before it joins; ctx is the
	// stream's (its peer carries the TLS state, for the certificate serial).
	Admit func(ctx context.Context, name string) error
	// Revocation, if set, makes revocation live: a client whose credential is withdrawn while
	// it is connected has its session closed at the next heartbeat tick (within one interval
	// of the change), its outstanding tasks failing as on a disconnect, and its new sessions
	// are refused (PermissionDenied: the client runtime gives up). While the view is unusable,
	// every session is closed and new ones are refused (Unavailable: clients retry). See
	// TLSRevocation.
	Revocation Revocation
	// ChunkSize is the payload bytes per chunk message (default DefaultChunkSize).
	ChunkSize int
	// MaxResultPayload bounds a secure-sum reply (default 64 MiB + 32 bytes per parameter of
	// the last model sent). A fit update must be exactly the model's size.
	MaxResultPayload uint64
	// Heartbeat is the interval of heartbeats both ways (default 5 s); a client silent for
	// three intervals is cut off and its tasks fail.
	Heartbeat time.Duration
	// SecureSum and SecureSumParams name the run's secure-sum protocol for the clients.
	SecureSum       string
	SecureSumParams []byte
	// Model, if set, is the model the run trains: announced in every Welcome, and a client
	// whose Hello describes an incompatible model (ModelSpec.CheckClient) is refused with
	// FailedPrecondition before it joins.
	Model   *ModelSpec
	Metrics *Metrics
	Logger  *slog.Logger
	// Steer, if set, is pace steering: asked for every admitted client before it joins, with the
	// number connected now; a positive duration turns the client away with a Welcome and then a
	// Goodbye asking it to come back after that long (the client runtime honours it).
	Steer func(name string, connected int) time.Duration
}

// Server is the networked fl.Transport: it serves the Federation service and runs the engine's
// tasks on the connected clients. Client ids are indices into a roster that only grows: the
// clients connected when the first round starts, in natural order of their names, then every
// later newcomer appended (newcomers of one round in name order). A client keeps its id when it
// disconnects and comes back, and a disconnected client's id answers "not connected", so the
// ids of the others never shift (a threshold-HE committee stays the same clients).
type Server struct {
	shoalv1.UnimplementedFederationServer
	cfg  ServerConfig
	log  *slog.Logger
	grpc *grpc.Server

	nextTask  atomic.Uint64
	nextConn  atomic.Uint64
	lastDim   atomic.Int64
	closeOnce sync.Once
	closing   chan struct{}

	mu          sync.Mutex
	changed     chan struct{} // closed and replaced whenever a client joins or leaves
	sessions    map[string]*session
	order       []string        // every client name the roster has held, in id order
	known       map[string]bool // the names in order
	snapshot    []*session      // taken by NumClients for the next round
	roster      []*session      // the current round's participants by client id
	rosterRound int
	needed      map[int]int // over-selection: updates a round needs
	revErr      error       // why the last Revocation.Refresh failed, or nil

	book clientBook // what Clients reports
}

var _ fl.Transport = (*Server)(nil)

// NewServer validates cfg and returns a server ready to Serve.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.RunID == "" {
		return nil, errors.New("grpc server: empty run id")
	}
	if cfg.Authenticate == nil {
		return nil, errors.New("grpc server: no authenticator")
	}
	if cfg.ChunkSize == 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if cfg.ChunkSize < 1024 || cfg.ChunkSize > 16<<20 {
		return nil, fmt.Errorf("grpc server: chunk size %d outside [1 KiB, 16 MiB]", cfg.ChunkSize)
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 5 * time.Second
	}
	if cfg.Heartbeat < 10*time.Millisecond {
		return nil, fmt.Errorf("grpc server: heartbeat interval %v too short", cfg.Heartbeat)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, closing: make(chan struct{}), changed: make(chan struct{}),
		sessions: map[string]*session{}, known: map[string]bool{}, needed: map[int]int{}, rosterRound: -1}
	var seed [8]byte
	_, _ = cryptoRead(seed[:])
	// Task ids start at a random point so a restarted server never accepts a previous
	// process's answers as its own.
	s.nextTask.Store(uint64(seed[0])<<56 | uint64(seed[1])<<48 | uint64(seed[2])<<40 | uint64(seed[3])<<32)
	return s, nil
}

// GRPCOptions are the limits and keepalive settings the Federation service needs: no message
// larger than a chunk plus its header, at most a few streams per connection, and transport
// pings so a vanished peer is noticed even while no heartbeat is due.
func (s *Server) GRPCOptions() []grpc.ServerOption {
	limit := s.cfg.ChunkSize + messageOverhead
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(limit),
		grpc.MaxSendMsgSize(limit),
		grpc.MaxConcurrentStreams(4),
		grpc.ReadBufferSize(16 << 10), grpc.WriteBufferSize(16 << 10), // per connection: 1,000 clients cost 32 MB less
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * s.cfg.Heartbeat, Timeout: 2 * s.cfg.Heartbeat}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: s.cfg.Heartbeat / 2, PermitWithoutStream: true}),
	}
}

// Serve serves the Federation service on lis until Close; extra options (TLS credentials) are
// added to GRPCOptions.
func (s *Server) Serve(lis net.Listener, extra ...grpc.ServerOption) error {
	s.mu.Lock()
	if s.grpc != nil {
		s.mu.Unlock()
		return errors.New("grpc server: already serving")
	}
	s.grpc = grpc.NewServer(append(s.GRPCOptions(), extra...)...)
	shoalv1.RegisterFederationServer(s.grpc, s)
	g := s.grpc
	s.mu.Unlock()
	s.refreshRevocation()
	go s.heartbeats()
	if err := g.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// Close ends every session with a Goodbye (telling clients whether the run is complete) and
// stops serving, waiting up to grace for the goodbyes to go out.
func (s *Server) Close(runComplete bool, reason string, grace time.Duration) {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.mu.Lock()
		sessions := make([]*session, 0, len(s.sessions))
		for _, ss := range s.sessions {
			sessions = append(sessions, ss)
		}
		g := s.grpc
		s.mu.Unlock()
		for _, ss := range sessions {
			ss.goodbye(reason, runComplete)
		}
		if g == nil {
			return
		}
		stopped := make(chan struct{})
		go func() { g.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(grace):
			g.Stop()
		}
	})
}

// Connected returns the names of the clients with an open session, in roster order.
func (s *Server) Connected() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.sessions))
	for n := range s.sessions {
		names = append(names, n)
	}
	slices.SortFunc(names, naturalCompare)
	return names
}

// WaitForClients blocks until at least n clients are connected or ctx is done.
func (s *Server) WaitForClients(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		have, changed := len(s.sessions), s.changed
		s.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d clients (%d connected): %w", n, have, ctx.Err())
		case <-s.closing:
			return errors.New("server closed while waiting for clients")
		}
	}
}

// NumClients fixes the next round's roster (see Server) and returns its size; the engine
// samples client ids among them.
func (s *Server) NumClients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snapshot = s.rosterSessions()
	return len(s.snapshot)
}

// Roster fixes the next round's roster, as NumClients does, and returns the ids of the clients
// connected now: a tier's edge offers them to its coordinator, which selects among them.
func (s *Server) Roster() []fl.ClientID {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snapshot = s.rosterSessions()
	ids := make([]fl.ClientID, 0, len(s.sessions))
	for i, ss := range s.snapshot {
		if ss != nil {
			ids = append(ids, fl.ClientID(i))
		}
	}
	return ids
}

// rosterSessions appends the newly connected names to the roster order and returns each id's
// session (nil for a client that is not connected now).
func (s *Server) rosterSessions() []*session {
	var fresh []string
	for name := range s.sessions {
		if !s.known[name] {
			fresh = append(fresh, name)
		}
	}
	slices.SortFunc(fresh, naturalCompare)
	for _, name := range fresh {
		s.known[name] = true
		s.order = append(s.order, name)
	}
	out := make([]*session, len(s.order))
	for i, name := range s.order {
		out[i] = s.sessions[name]
	}
	return out
}

// beginRound makes the NumClients snapshot the roster of round.
func (s *Server) beginRound(round int) []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snapshot == nil {
		s.snapshot = s.rosterSessions()
	}
	s.roster, s.rosterRound, s.snapshot = s.snapshot, round, nil
	for r := range s.needed {
		if r < round {
			delete(s.needed, r)
		}
	}
	return s.roster
}

func (s *Server) currentRoster() ([]*session, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.roster, s.rosterRound
}

// errNotConnected and errOverSelected are why a client got no task or lost it.
var (
	errNotConnected = fmt.Errorf("%w: not connected", fl.ErrDropped)
	errOverSelected = fmt.Errorf("%w: over-selected, the round already had enough answers", fl.ErrDropped)
)

// Fit sends the fit task to the cohort and delivers each answer as it arrives. With
// over-selection the stage ends as soon as the round has the updates it needs; the remaining
// clients' tasks are cancelled and delivered as over-selected.
func (s *Server) Fit(ctx context.Context, cohort []fl.ClientID, ins fl.FitIns, deliver func(fl.FitOutcome)) error {
	roster := s.beginRound(ins.Round)
	// One copy per round, shared by every client's sender: the engine updates the model as
	// soon as Fit returns, while a sender may still be writing a withdrawn task's chunk.
	payload := bytes.Clone(floatBytes(ins.Params))
	s.lastDim.Store(int64(len(ins.Params)))
	crc := checksum(payload)
	exact := int64(len(payload))
	if ins.Secure {
		exact = 0
	}
	cfg := fitConfigProto(ins.Config)
	jobs := make([]job, len(cohort))
	for i, id := range cohort {
		jobs[i] = job{sess: at(roster, id), kind: shoalv1.TaskKind_TASK_KIND_FIT, client: id, round: ins.Round,
			fit: cfg, secure: ins.Secure, payload: payload, crc: crc, exact: exact}
	}
	need := len(cohort)
	s.mu.Lock()
	if n, ok := s.needed[ins.Round]; ok && n < need {
		need = n
	}
	s.mu.Unlock()
	start := time.Now()
	defer func() { s.cfg.Metrics.stage("fit", time.Since(start).Seconds()) }()
	return s.dispatch(ctx, jobs, need, func(i int, a answer) bool {
		o := fl.FitOutcome{Client: cohort[i], Err: a.err}
		if o.Err == nil {
			r := a.res
			o.Res = fl.FitRes{NumExamples: clampInt(r.GetNumExamples()), Loss: r.GetLoss(), Unclipped: r.GetUnclipped()}
			if a.payload != nil {
				o.Res.Update, o.Err = bytesFloats(a.payload)
			}
		}
		deliver(o)
		return o.Err == nil
	})
}

// Evaluate sends the evaluation task to the cohort of the current round.
func (s *Server) Evaluate(ctx context.Context, cohort []fl.ClientID, params []float32, deliver func(fl.EvalOutcome)) error {
	roster, round := s.currentRoster()
	payload := bytes.Clone(floatBytes(params))
	crc := checksum(payload)
	jobs := make([]job, len(cohort))
	for i, id := range cohort {
		jobs[i] = job{sess: at(roster, id), kind: shoalv1.TaskKind_TASK_KIND_EVALUATE, client: id, round: round,
			payload: payload, crc: crc, exact: 0}
	}
	start := time.Now()
	defer func() { s.cfg.Metrics.stage("evaluate", time.Since(start).Seconds()) }()
	return s.dispatch(ctx, jobs, len(jobs), func(i int, a answer) bool {
		o := fl.EvalOutcome{Client: cohort[i], Err: a.err}
		if o.Err == nil {
			o.Res = fl.EvalRes{Loss: a.res.GetLoss(), Accuracy: a.res.GetAccuracy(), NumExamples: clampInt(a.res.GetNumExamples())}
		}
		deliver(o)
		return o.Err == nil
	})
}

// Exchange carries one secure-sum stage to the round's participants and their replies back.
func (s *Server) Exchange(ctx context.Context, round, stage int, msgs map[fl.ClientID][]byte, deliver func(fl.ClientID, []byte, error)) error {
	roster, current := s.currentRoster()
	if current != round {
		// A round without a fit stage of its own (a protocol's setup, round 0) takes the
		// roster NumClients fixed for it.
		s.mu.Lock()
		fresh := s.snapshot != nil
		s.mu.Unlock()
		if fresh {
			roster, current = s.beginRound(round), round
		}
	}
	ids := make([]fl.ClientID, 0, len(msgs))
	for id := range msgs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if current != round {
		for _, id := range ids {
			deliver(id, nil, fmt.Errorf("exchange for round %d, but the clients were given round %d", round, current))
		}
		return fmt.Errorf("exchange for round %d outside the current round %d", round, current)
	}
	limit := s.maxResult()
	jobs := make([]job, len(ids))
	for i, id := range ids {
		jobs[i] = job{sess: at(roster, id), kind: shoalv1.TaskKind_TASK_KIND_EXCHANGE, client: id, round: round, stage: stage,
			payload: bytes.Clone(msgs[id]), crc: checksum(msgs[id]), exact: -1, limit: limit}
	}
	start := time.Now()
	defer func() { s.cfg.Metrics.stage("exchange", time.Since(start).Seconds()) }()
	return s.dispatch(ctx, jobs, len(jobs), func(i int, a answer) bool {
		deliver(ids[i], a.payload, a.err)
		return a.err == nil
	})
}

func (s *Server) maxResult() uint64 {
	if s.cfg.MaxResultPayload > 0 {
		return s.cfg.MaxResultPayload
	}
	return 64<<20 + 32*uint64(max(0, s.lastDim.Load()))
}

func at(roster []*session, id fl.ClientID) *session {
	if id < 0 || int(id) >= len(roster) {
		return nil
	}
	return roster[id]
}

func clampInt(v int64) int {
	if v > math.MaxInt32 || v < math.MinInt32 {
		return -1 // implausible: the engine refuses it as an invalid example count
	}
	return int(v)
}

// job is one task of a dispatch, before it is sent.
type job struct {
	sess         *session
	kind         shoalv1.TaskKind
	client       fl.ClientID
	round, stage int
	fit          *shoalv1.FitConfig
	secure       bool
	payload      []byte
	crc          uint32
	exact        int64  // required size of the answer's payload, or -1
	limit        uint64 // bound on the answer's payload when exact is -1
}

// answer is how a task ended.
type answer struct {
	index   int
	res     *shoalv1.Result
	payload []byte
	err     error
}

// dispatch sends every job and calls onAnswer once per job, from this goroutine, as answers
// arrive; once need answers were good, or ctx is done, the rest are cancelled and answered
// with errOverSelected or ErrTimeout.
func (s *Server) dispatch(ctx context.Context, jobs []job, need int, onAnswer func(i int, a answer) bool) error {
	answers := make(chan answer, len(jobs))
	tasks := make([]*task, len(jobs))
	for i, j := range jobs {
		if j.sess == nil {
			answers <- answer{index: i, err: errNotConnected}
			continue
		}
		t := &task{
			hdr:   header{run: s.cfg.RunID, round: uint32(j.round), stage: uint32(j.stage), taskID: s.nextTask.Add(1)},
			kind:  j.kind,
			index: i, answers: answers, exact: j.exact, limit: j.limit,
		}
		tasks[i] = t
		msg := &shoalv1.ServerMsg{Body: &shoalv1.ServerMsg_Task{Task: &shoalv1.Task{
			Header: t.hdr.proto(), Kind: j.kind, ClientId: int64(j.client), Fit: j.fit, Secure: j.secure,
			Payload: &shoalv1.Payload{Size: uint64(len(j.payload)), Crc32C: j.crc},
		}}}
		j.sess.start(t, msg, j.payload)
	}
	good, pending := 0, len(jobs)
	var err error
	finishRest := func(cause error) {
		for _, t := range tasks {
			if t != nil {
				t.cancel(cause)
			}
		}
	}
	for pending > 0 {
		select {
		case a := <-answers:
			pending--
			if a.err == nil && good >= need {
				// Answered while the need was being met, before the cancel reached it: keep
				// exactly the need, as over-selection promises.
				a = answer{index: a.index, err: errOverSelected}
			}
			kind := kindName(jobs[a.index].kind)
			s.book.answered(jobs[a.index].sess, jobs[a.index], a.err)
			switch {
			case a.err == nil:
				s.cfg.Metrics.task(kind, "ok")
			case errors.Is(a.err, fl.ErrTimeout):
				s.cfg.Metrics.task(kind, "timeout")
			case errors.Is(a.err, errOverSelected):
				s.cfg.Metrics.task(kind, "over-selected")
			default:
				s.cfg.Metrics.task(kind, "failed")
			}
			if onAnswer(a.index, a) {
				good++
				if good == need && pending > 0 {
					finishRest(errOverSelected)
				}
			}
		case <-ctx.Done():
			err = ctx.Err()
			finishRest(fmt.Errorf("%w: %v", fl.ErrTimeout, err))
		}
	}
	return err
}

// task is one task outstanding on a session.
type task struct {
	hdr      header
	kind     shoalv1.TaskKind
	index    int
	answers  chan<- answer
	exact    int64
	limit    uint64
	sess     *session
	once     sync.Once
	finished atomic.Bool
}

// finish delivers the task's one answer and forgets the task; later calls do nothing.
func (t *task) finish(a answer) bool {
	done := false
	t.once.Do(func() {
		done = true
		t.finished.Store(true)
		if t.sess != nil {
			t.sess.forget(t.hdr.taskID)
		}
		a.index = t.index
		t.answers <- a
	})
	return done
}

// cancel ends the task with err and tells the client to stop working on it.
func (t *task) cancel(err error) {
	if t.finish(answer{err: err}) && t.sess != nil {
		t.sess.send(&shoalv1.ServerMsg{Body: &shoalv1.ServerMsg_Cancel{Cancel: &shoalv1.Cancel{Header: t.hdr.proto(), Reason: err.Error()}}}, nil, nil)
	}
}
