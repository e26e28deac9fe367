package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"shoal/store"
	"shoal/store/postgres/pgtest"
)

// The conformance tests (every RunStore method, locks, schema versions, crashes) are in package
// store, run on both backends; these are PostgreSQL's own: restarts, lost answers, passwords.

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopShared()
	if code != 0 {
		fmt.Println("(PostgreSQL for these tests: " + pgtest.EnvURL + ", or a throwaway cluster of Debian's postgresql)")
	}
	os.Exit(code)
}

// syncBuffer is a log sink shared by the store's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testModel is the model after round r: every element depends on r, so a model mixing two
// rounds fails the comparison.
func testModel(r, n int) []float32 {
	rng := rand.New(rand.NewPCG(uint64(r), 7))
	m := make([]float32, n)
	for i := range m {
		m[i] = rng.Float32()
	}
	return m
}

func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// verifyRun checks that the run has exactly rounds 1..last, each with its own model and
// metrics, and that every checksum verifies.
func verifyRun(t *testing.T, s *Store, run int64, last, n int) {
	t.Helper()
	r, model, _, _, err := s.LastRound(run)
	if err != nil || r != last || !sameBits(model, testModel(r, n)) {
		t.Fatalf("last round %d (%v), want %d with its model", r, err, last)
	}
	hist, err := s.History(run)
	if err != nil || len(hist) != last {
		t.Fatalf("%d rounds in the history (%v), want %d", len(hist), err, last)
	}
	for i, h := range hist {
		var m struct{ Round int }
		if err := json.Unmarshal(h, &m); err != nil || m.Round != i+1 {
			t.Fatalf("history entry %d is %s", i+1, h)
		}
	}
	for _, r := range []int{1, last / 2, last} {
		if m, err := s.RoundModel(run, r); err != nil || !sameBits(m, testModel(r, n)) {
			t.Fatalf("model of round %d: %v", r, err)
		}
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

func commit(s *Store, run int64, r, n int) error {
	return s.CommitRound(run, r, testModel(r, n), []byte(fmt.Sprintf(`{"round":%d}`, r)), []byte(fmt.Sprintf(`{"steps":%d}`, r)), nil)
}

// TestRestartMidRun restarts the PostgreSQL server (pg_ctl stop -m fast, then -m immediate,
// as after a crash) while a writer commits rounds back to back: the writer waits and retries
// instead of failing, and at the end every round is stored exactly once, none lost, none
// repeated, each with its own model.
func TestRestartMidRun(t *testing.T) {
	c, err := pgtest.StartCluster()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Destroy()
	var logs syncBuffer
	s, err := Open(context.Background(), c.URL(), Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	run, err := s.CreateRun([]byte(`{"test":"restart"}`))
	if err != nil {
		t.Fatal(err)
	}
	const n = 60000
	var acked atomic.Int64
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for r := 1; ; r++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if err := commit(s, run, r, n); err != nil {
				done <- err
				return
			}
			acked.Store(int64(r))
		}
	}()
	waitFor := func(atLeast int64) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for acked.Load() < atLeast {
			select {
			case err := <-done:
				t.Fatalf("writer failed at round %d: %v\nlog:\n%s", acked.Load()+1, err, logs.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("writer stuck at round %d\nlog:\n%s\nserver log:\n%s", acked.Load(), logs.String(), c.Log())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for i, mode := range []string{"fast", "immediate", "fast"} {
		waitFor(acked.Load() + 20)
		if err := c.Stop(mode); err != nil {
			t.Fatal(err)
		}
		before := acked.Load()                                  // the server is down
		time.Sleep(time.Duration(300+200*i) * time.Millisecond) // the writer retries meanwhile
		during := acked.Load()
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		// Nothing commits while the server is down; at most the answer to the commit in flight
		// when it stopped may arrive late.
		if during > before+1 {
			t.Fatalf("restart %d: %d rounds acknowledged while the server was down", i, during-before)
		}
		t.Logf("restart %d (-m %s) at round %d", i, mode, before)
	}
	waitFor(acked.Load() + 20)
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	last := int(acked.Load())
	verifyRun(t, s, run, last, n)
	log := logs.String()
	if got := strings.Count(log, "database unavailable, retrying"); got < 3 {
		t.Fatalf("%d retries logged for 3 restarts:\n%s", got, log)
	}
	if !strings.Contains(log, "reconnected") || strings.Contains(log, c.Password()) {
		t.Fatalf("log (no reconnection, or the password shows):\n%s", log)
	}
	t.Logf("%d rounds committed across 3 restarts, %d retries", last, strings.Count(log, "database unavailable, retrying"))
}

// TestLostCommitAnswer cuts the connection after the server has committed a round but before
// its answer reaches the store (a proxy forwards COMMIT, waits until the round is visible to
// another session, then drops the connection): the store's retry finds the round it
// committed and succeeds, instead of failing "out of order" or committing it twice.
func TestLostCommitAnswer(t *testing.T) {
	base := pgtest.NewStore(t)
	p := newProxy(t, base)
	var logs syncBuffer
	s, err := Open(context.Background(), p.url, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	run, err := s.CreateRun([]byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	for r := 1; r <= 2; r++ {
		if err := commit(s, run, r, n); err != nil {
			t.Fatal(err)
		}
	}
	p.cutAfterCommitOf(3)
	if err := commit(s, run, 3, n); err != nil {
		t.Fatalf("commit whose answer was lost: %v\nlog:\n%s", err, logs.String())
	}
	if !p.cut.Load() {
		t.Fatal("the proxy never cut the connection: the test did not test anything")
	}
	if !strings.Contains(logs.String(), "retrying") {
		t.Fatalf("no retry logged:\n%s", logs.String())
	}
	if err := commit(s, run, 4, n); err != nil {
		t.Fatal(err)
	}
	verifyRun(t, s, run, 4, n)
}

// proxy relays connections to the database and can drop one right after COMMIT.
type proxy struct {
	t      *testing.T
	url    string
	target string
	direct string // the database, for the proxy's own check
	round  atomic.Int64
	cut    atomic.Bool
}

// commitMsg is the simple-protocol Query message pgx sends to commit a transaction.
var commitMsg = []byte("Q\x00\x00\x00\x0bcommit\x00")

func newProxy(t *testing.T, dbURL string) *proxy {
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &proxy{t: t, target: net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)), direct: dbURL}
	p.url = strings.Replace(dbURL, p.target, l.Addr().String(), 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.relay(c)
		}
	}()
	return p
}

func (p *proxy) cutAfterCommitOf(round int) { p.round.Store(int64(round)) }

func (p *proxy) relay(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	var mute atomic.Bool // set: the server's answers are dropped
	go func() {
		buf := make([]byte, 64<<10)
		for {
			k, err := server.Read(buf)
			if k > 0 && !mute.Load() {
				client.Write(buf[:k])
			}
			if err != nil {
				client.Close()
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		k, err := client.Read(buf)
		if k > 0 {
			armed := p.round.Load()
			if armed > 0 && bytes.Contains(buf[:k], commitMsg) {
				mute.Store(true)
				server.Write(buf[:k])
				p.waitCommitted(armed)
				p.round.Store(0)
				p.cut.Store(true)
				client.Close()
				server.Close()
				return
			}
			server.Write(buf[:k])
		}
		if err != nil {
			server.Close()
			return
		}
	}
}

// waitCommitted polls, on a connection of its own, until the round is committed.
func (p *proxy) waitCommitted(round int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.direct)
	if err != nil {
		p.t.Error(err)
		return
	}
	defer c.Close(ctx)
	for ctx.Err() == nil {
		var k int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM rounds WHERE round = $1", round).Scan(&k); err == nil && k == 1 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.t.Errorf("round %d never became visible", round)
}

// Connection strings never show their password: not in Path, not in errors, not in logs.
func TestPasswordNeverShown(t *testing.T) {
	u := pgtest.NewStore(t)
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	pw := cfg.Password
	if pw == "" {
		t.Fatal("the test server has no password: nothing to test")
	}
	var logs syncBuffer
	o := Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), RetryFor: 300 * time.Millisecond}
	s, err := Open(context.Background(), u, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if strings.Contains(s.Path(), pw) || !strings.HasPrefix(s.Path(), "postgres://") {
		t.Fatalf("Path %q", s.Path())
	}
	var errs []error
	_, err = Open(context.Background(), u, o) // locked
	errs = append(errs, err)
	wrong := strings.Replace(u, pw, pw+"x", 1)
	_, err = Open(context.Background(), wrong, o) // wrong password: no retry
	errs = append(errs, err)
	unreachable := strings.Replace(u, fmt.Sprintf(":%d/", cfg.Port), ":1/", 1) // nothing listens: retried, then given up
	_, err = Open(context.Background(), unreachable, o)
	errs = append(errs, err)
	_, err = Open(context.Background(), "postgres://shoal:"+pw+"@host:notaport/db", o) // unparsable
	errs = append(errs, err)
	for i, err := range errs {
		if err == nil || strings.Contains(err.Error(), pw) {
			t.Fatalf("case %d: %v", i, err)
		}
		t.Logf("case %d: %v", i, err)
	}
	if !errors.Is(errs[0], store.ErrLocked) {
		t.Fatalf("second writer: %v", errs[0])
	}
	if strings.Contains(logs.String(), pw) || !strings.Contains(logs.String(), "retrying") {
		t.Fatalf("log:\n%s", logs.String())
	}
}

// The lock fences writes: a writer whose session is lost while another process takes the lock
// does not write beside it; its next call fails with ErrLocked, and the new writer's rounds stand.
func TestLockLostToAnotherWriter(t *testing.T) {
	u := pgtest.NewStore(t)
	a, err := Open(context.Background(), u, Options{RetryFor: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	run, err := a.CreateRun([]byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := commit(a, run, 1, 10); err != nil {
		t.Fatal(err)
	}
	// A's session dies (as in a network partition); B opens the store and takes the lock.
	var pid uint32
	a.mu.Lock()
	pid = a.conn.PgConn().PID()
	a.mu.Unlock()
	admin, err := pgx.Connect(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(context.Background(), "SELECT pg_terminate_backend($1)", int32(pid)); err != nil {
		t.Fatal(err)
	}
	var b *Store
	for deadline := time.Now().Add(10 * time.Second); ; { // the terminated backend lets go in a moment
		if b, err = Open(context.Background(), u, Options{}); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("second writer after the first lost its session: %v", err)
	}
	defer b.Close()
	if err := commit(b, run, 2, 10); err != nil {
		t.Fatal(err)
	}
	if err := commit(a, run, 3, 10); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("the writer that lost its lock: %v, want ErrLocked", err)
	}
	if r, _, _, _, err := b.LastRound(run); err != nil || r != 2 {
		t.Fatalf("last round %d (%v), want 2", r, err)
	}
}

// The URL's search_path picks the schema; SQL in it is not run: it is a session parameter,
// and no statement is built from it (identifiers go to the database as parameters).
func TestAttackSearchPathInjection(t *testing.T) {
	u := pgtest.NewStore(t)
	a, err := Open(context.Background(), u, Options{})
	if err != nil {
		t.Fatal(err)
	}
	run, err := a.CreateRun([]byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := commit(a, run, 1, 10); err != nil {
		t.Fatal(err)
	}
	a.Close()
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	schema := parsed.Query().Get("search_path")
	for _, sp := range []string{
		`nosuch"; DROP TABLE ` + schema + `.rounds; --`,
		`nosuch'); DROP TABLE ` + schema + `.rounds; --`,
		schema + `; DROP TABLE ` + schema + `.rounds`,
	} {
		q := parsed.Query()
		q.Set("search_path", sp)
		evil := *parsed
		evil.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20") // a space, not a plus
		s, err := Open(context.Background(), evil.String(), Options{RetryFor: -1})
		t.Logf("search_path %q: %v", sp, err)
		if err == nil {
			s.Close()
		}
	}
	r, err := OpenReadOnly(context.Background(), u, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if last, _, _, _, err := r.LastRound(run); err != nil || last != 1 {
		t.Fatalf("after the injection attempts: last round %d, %v", last, err)
	}
}
