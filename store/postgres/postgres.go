// Package postgres is the PostgreSQL backend of Shoal's run store (store.RunStore), for
// deployments where more than one process must see the run (the coordinator tier, standby
// servers) or where the database is operated, backed up and replicated apart from the server.
//
// It keeps the SQLite store's contract: the same schema versions (migrations recorded in a
// schema_version table, a newer schema refused), models as little-endian float32 blobs with
// their length and SHA-256, a round committed in one transaction, and one writer at a time.
//
// The store works on one database session (pgx, not database/sql: the session must be pinned,
// and pgx reports which errors are the connection's). That session holds a session-level
// advisory lock keyed by the store's schema, the PostgreSQL equivalent of the SQLite file lock:
// a second process gets store.ErrLocked, and the lock goes when the session does (Close, the
// process dying, the connection lost). Every statement runs on the session that holds the lock,
// so the lock fences writes, not only opens: after a lost connection the store reconnects and
// takes the lock again before anything else, and if another process took it meanwhile, the
// call fails with ErrLocked instead of writing beside it.
//
// When the database goes away (restart, failover, network), a call waits and retries with
// exponential backoff for Options.RetryFor, logging each attempt. A commit whose outcome is
// unknown (the connection died after COMMIT was sent) is recognised on retry by its content, so
// a round is committed exactly once.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"shoal/store"
)

// Defaults of Options.
const (
	DefaultRetryFor     = 2 * time.Minute
	DefaultCallTimeout  = time.Minute
	minBackoff          = 100 * time.Millisecond
	maxBackoff          = 5 * time.Second
	lockPollingInterval = 100 * time.Millisecond
)

// lockClass is the first key of the advisory lock ("SHOL", as the SQLite application id); the
// second is a hash of the schema, so that stores in different schemas do not exclude each other.
const lockClass = 0x53484f4c

// marker is the comment on the schema_version table that tells a Shoal run store from another
// program's table of the same name.
const marker = "Shoal run store"

// Options tune a store; the zero value is the defaults.
type Options struct {
	// Logger receives the reconnection and retry messages (default slog.Default()).
	Logger *slog.Logger
	// RetryFor bounds how long a call waits for an unavailable database before it fails
	// (default DefaultRetryFor; negative: no retry).
	RetryFor time.Duration
	// CallTimeout bounds one attempt of a call, so that a silently dead connection is given up
	// and retried rather than waited on forever (default DefaultCallTimeout).
	CallTimeout time.Duration
	// LockWait is how long Open waits for another holder of the writer lock to let go (a killed
	// server's session can outlive it by a moment) before it returns ErrLocked (default 0:
	// one try).
	LockWait time.Duration
}

type openMode struct {
	create   bool // create the schema if there is none
	readOnly bool // no lock, no migration, every write refused
	noLock   bool // tests only: a second writer past the lock
}

// Store is an open PostgreSQL run store. Its methods are safe for concurrent use; they run
// one at a time on the store's session.
type Store struct {
	cfg      *pgx.ConnConfig
	name     string // the URL without its password, for messages
	mode     openMode
	log      *slog.Logger
	retryFor time.Duration
	callTime time.Duration

	ctx    context.Context // cancelled by Close: ends any wait
	cancel context.CancelFunc

	mu        sync.Mutex
	conn      *pgx.Conn // nil until connected and after the connection was lost
	connected bool      // a session was established once (later ones are reconnections)
	schema    string
	closed    bool
}

var _ store.RunStore = (*Store)(nil)

// Open opens the run store in the database (and schema: the first of search_path) that
// connString names, creating its tables if there are none and migrating an older schema. It
// takes the writer lock: a second writer gets an error wrapping store.ErrLocked. The database
// must exist; connString is a postgres:// URL or key=value string as libpq takes them.
func Open(ctx context.Context, connString string, o Options) (*Store, error) {
	return open(ctx, connString, o, openMode{create: true})
}

// OpenExisting is Open for a store that must already exist (resuming a run): a database without
// one is an error wrapping fs.ErrNotExist.
func OpenExisting(ctx context.Context, connString string, o Options) (*Store, error) {
	return open(ctx, connString, o, openMode{})
}

// OpenReadOnly opens an existing store for reading while a writer may be using it: no lock, no
// migration, every write refused by the database. It must be at this program's schema version.
func OpenReadOnly(ctx context.Context, connString string, o Options) (*Store, error) {
	return open(ctx, connString, o, openMode{readOnly: true})
}

func open(ctx context.Context, connString string, o Options, mode openMode) (*Store, error) {
	cfg, name, err := parse(connString)
	if err != nil {
		return nil, err
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		host, _ := os.Hostname()
		cfg.RuntimeParams["application_name"] = fmt.Sprintf("shoal pid %d on %s", os.Getpid(), host)
	}
	if mode.readOnly {
		cfg.RuntimeParams["default_transaction_read_only"] = "on"
	}
	s := &Store{cfg: cfg, name: name, mode: mode, log: o.Logger, retryFor: o.RetryFor, callTime: o.CallTimeout}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.retryFor == 0 {
		s.retryFor = DefaultRetryFor
	}
	if s.callTime <= 0 {
		s.callTime = DefaultCallTimeout
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, s.cancel) // the caller may give up on opening
	defer stop()

	deadline := time.Now().Add(o.LockWait)
	for {
		// The first attempt connects and runs init, as every reconnection does.
		err = s.do("open", func(context.Context, *pgx.Conn, bool) error { return nil })
		if !errors.Is(err, store.ErrLocked) || time.Now().After(deadline) {
			break
		}
		s.dropConn()
		select {
		case <-time.After(lockPollingInterval):
		case <-s.ctx.Done():
		}
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open run store %s: %w", name, err)
	}
	return s, nil
}

// parse reads a connection string and names it without its password. Parse errors never
// quote the password, whatever pgx's best-effort redaction does with a malformed string.
func parse(connString string) (*pgx.ConnConfig, string, error) {
	if i := strings.Index(connString, "://"); i > 0 { // URL schemes are case-insensitive; pgx's test is not
		connString = strings.ToLower(connString[:i]) + connString[i:]
	}
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		msg := err.Error()
		if u, uerr := url.Parse(connString); uerr == nil && u.User != nil {
			if pw, ok := u.User.Password(); ok && pw != "" {
				msg = strings.ReplaceAll(msg, pw, "xxxxx")
			}
		}
		return nil, "", fmt.Errorf("run store: invalid PostgreSQL connection string: %s", msg)
	}
	if cfg.Database == "" {
		return nil, "", errors.New("run store: the PostgreSQL connection string names no database")
	}
	name := fmt.Sprintf("postgres://%s@%s/%s", url.User(cfg.User).String(), net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)), url.PathEscape(cfg.Database))
	if sp := cfg.RuntimeParams["search_path"]; sp != "" {
		name += "?search_path=" + url.QueryEscape(sp)
	}
	return cfg, name, nil
}

// init prepares a new session: it checks the schema, takes the writer lock and migrates.
func (s *Store) init(ctx context.Context, c *pgx.Conn) error {
	if err := s.identify(ctx, c); err != nil {
		return err
	}
	exists, err := s.checkOwnership(ctx, c)
	if err != nil {
		return err
	}
	if s.mode.readOnly {
		if !exists {
			return fmt.Errorf("no Shoal run store in schema %q: %w", s.schema, fs.ErrNotExist)
		}
		v, err := schemaVersion(ctx, c)
		if err != nil {
			return err
		}
		switch {
		case v > SchemaVersion:
			return fmt.Errorf("%w: database has schema version %d, this program knows up to %d; use a newer shoal", store.ErrFutureSchema, v, SchemaVersion)
		case v < SchemaVersion:
			return fmt.Errorf("database has schema version %d, this program needs %d: open it read-write once to migrate", v, SchemaVersion)
		}
		return nil
	}
	if !exists && !s.mode.create {
		return fmt.Errorf("no Shoal run store in schema %q: %w", s.schema, fs.ErrNotExist)
	}
	return migrate(ctx, c)
}

// identify reads the session's schema and, for a writer, takes the lock.
func (s *Store) identify(ctx context.Context, c *pgx.Conn) error {
	var schema *string
	if err := c.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return err
	}
	if schema == nil {
		return fmt.Errorf("no schema of search_path %q exists in the database", s.cfg.RuntimeParams["search_path"])
	}
	if s.schema != "" && s.schema != *schema {
		return fmt.Errorf("the session's schema changed from %q to %q", s.schema, *schema)
	}
	s.schema = *schema
	if s.mode.readOnly {
		return nil
	}
	// A host that dies without closing its connection keeps the lock until the server notices;
	// these make it notice within about half a minute (TCP connections only; no-ops on sockets).
	for _, set := range []string{"SET tcp_keepalives_idle = 10", "SET tcp_keepalives_interval = 5", "SET tcp_keepalives_count = 3"} {
		if _, err := c.Exec(ctx, set); err != nil {
			return fmt.Errorf("%s: %w", set, err)
		}
	}
	if s.mode.noLock {
		return nil
	}
	var got bool
	if err := c.QueryRow(ctx, "SELECT pg_try_advisory_lock($1::int4, $2::int4)", lockClass, lockKey(s.schema)).Scan(&got); err != nil {
		return fmt.Errorf("take the writer lock: %w", err)
	}
	if !got {
		return fmt.Errorf("%w: another process%s holds its writer lock", store.ErrLocked, lockHolder(ctx, c, s.schema))
	}
	return nil
}

// lockKey is the second advisory lock key: the schema's FNV-1a hash, kept positive so that it
// reads the same as pg_locks.objid (an oid).
func lockKey(schema string) int32 {
	h := fnv.New32a()
	io.WriteString(h, schema)
	return int32(h.Sum32() & 0x7fffffff)
}

// lockHolder describes the session holding the lock, for the ErrLocked message (best effort:
// pg_stat_activity hides other users' details from unprivileged roles).
func lockHolder(ctx context.Context, c *pgx.Conn, schema string) string {
	var pid int32
	var app, addr *string
	err := c.QueryRow(ctx, `SELECT a.pid, a.application_name, host(a.client_addr)
		FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND l.classid = $1::int8::oid AND l.objid = $2::int8::oid AND l.objsubid = 2`,
		int64(lockClass), int64(lockKey(schema))).Scan(&pid, &app, &addr)
	if err != nil {
		return ""
	}
	var parts []string
	if app != nil && *app != "" {
		parts = append(parts, *app)
	}
	if addr != nil && *addr != "" {
		parts = append(parts, "from "+*addr)
	}
	parts = append(parts, fmt.Sprintf("backend pid %d", pid))
	return " (" + strings.Join(parts, ", ") + ")"
}

// checkOwnership reports whether the schema holds a Shoal run store, and refuses one whose
// tables belong to another program.
func (s *Store) checkOwnership(ctx context.Context, c *pgx.Conn) (bool, error) {
	var comment *string
	var found bool
	err := c.QueryRow(ctx, `SELECT true, obj_description(c.oid, 'pg_class') FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relname = 'schema_version'`).
		Scan(&found, &comment)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return false, err
	}
	if found {
		if comment == nil || *comment != marker {
			return false, fmt.Errorf("not a Shoal run store: schema %q has a table schema_version of another program", s.schema)
		}
		return true, nil
	}
	var other int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = current_schema() AND c.relname IN ('runs', 'rounds', 'clients', 'public')`).Scan(&other); err != nil {
		return false, err
	}
	if other > 0 {
		return false, fmt.Errorf("not a Shoal run store: schema %q has tables of another program named like the store's (runs, rounds, clients, public)", s.schema)
	}
	return false, nil
}

// Path names the store: its URL without the password.
func (s *Store) Path() string { return s.name }

// Close ends any call waiting for the database, closes the session and so releases the lock.
// Committed rounds are durable whether or not Close is called.
func (s *Store) Close() error {
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.conn.Close(ctx)
	s.conn = nil
	if err != nil {
		return fmt.Errorf("close run store %s: %w", s.name, err)
	}
	return nil
}

// errClosed is returned by calls on a closed store.
var errClosed = errors.New("run store is closed")

// do runs f on the session, (re)connecting first if needed, and retries it with backoff while
// the failure is the connection's and RetryFor has not passed. f learns whether an earlier
// attempt failed, for it may have committed before its answer was lost.
func (s *Store) do(op string, f func(ctx context.Context, c *pgx.Conn, retried bool) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	start := time.Now()
	backoff := minBackoff
	for attempt := 0; ; attempt++ {
		err := s.attempt(op, f, attempt > 0)
		if err == nil {
			if attempt > 0 {
				s.log.Info("run store: database back", "op", op, "store", s.name, "attempts", attempt+1, "after", time.Since(start).Round(time.Millisecond))
			}
			return nil
		}
		if s.ctx.Err() != nil {
			return fmt.Errorf("%w (run store closed while waiting for the database)", err)
		}
		if !s.retryable(err) {
			return err
		}
		s.dropConn()
		wait := backoff/2 + rand.N(backoff/2+1) // jitter: restarted servers are not hit in step
		if s.retryFor < 0 || time.Since(start)+wait > s.retryFor {
			return fmt.Errorf("database unavailable for %v, giving up: %w", time.Since(start).Round(time.Millisecond), err)
		}
		s.log.Warn("run store: database unavailable, retrying", "op", op, "store", s.name, "attempt", attempt+1,
			"retry_in", wait.Round(time.Millisecond), "err", err)
		select {
		case <-time.After(wait):
		case <-s.ctx.Done():
			return fmt.Errorf("%w (run store closed while waiting for the database)", err)
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// attempt runs f once, under CallTimeout, on a live session.
func (s *Store) attempt(op string, f func(ctx context.Context, c *pgx.Conn, retried bool) error, retried bool) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.callTime)
	defer cancel()
	if s.conn == nil {
		c, err := pgx.ConnectConfig(ctx, s.cfg)
		if err != nil {
			return err
		}
		// No statement runs on a session before init took the lock on it.
		if err := s.init(ctx, c); err != nil {
			c.Close(ctx)
			return err
		}
		s.conn = c
		if s.connected {
			s.log.Info("run store: reconnected", "op", op, "store", s.name, "writer_lock", !s.mode.readOnly && !s.mode.noLock)
		}
		s.connected = true
	}
	return f(ctx, s.conn, retried)
}

// dropConn forgets a session that failed; closing it also tells the server to let go of the
// lock if the connection still half works.
func (s *Store) dropConn() {
	if s.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	s.conn.Close(ctx)
	cancel()
	s.conn = nil
}

// retryable tells the database's unavailability (a connection refused, reset or terminated by
// a shutting-down server, a call timing out) from errors another attempt would repeat
// (constraint violations, bad input, a lost lock, a wrong password).
func (s *Store) retryable(err error) bool {
	if errors.Is(err, store.ErrLocked) || errors.Is(err, errClosed) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03", // admin/crash shutdown, starting up
			pgErr.Code == "40001", pgErr.Code == "40P01", // serialization failure, deadlock
			pgErr.Code == "53300": // too many connections
			return true
		}
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) {
		return true
	}
	var netErr net.Error
	var connErr *pgconn.ConnectError
	if errors.As(err, &netErr) || errors.As(err, &connErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	// Whatever it was, if it killed the session, the session is what failed.
	return s.conn != nil && s.conn.IsClosed()
}

// inTx runs f in a transaction on the session, retried as a whole.
func (s *Store) inTx(op string, readOnly bool, f func(ctx context.Context, tx pgx.Tx, retried bool) error) error {
	return s.do(op, func(ctx context.Context, c *pgx.Conn, retried bool) error {
		opts := pgx.TxOptions{}
		if readOnly {
			// One snapshot for all the queries of a read.
			opts = pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
		}
		tx, err := c.BeginTx(ctx, opts)
		if err != nil {
			return err
		}
		if err := f(ctx, tx, retried); err != nil {
			tx.Rollback(ctx)
			return err
		}
		return tx.Commit(ctx)
	})
}

// CreateRun records a new run with its configuration (JSON) and returns its id.
func (s *Store) CreateRun(config []byte) (int64, error) {
	if !json.Valid(config) {
		return 0, errors.New("create run: configuration is not valid JSON")
	}
	// The creation time, taken once, identifies this insert if its commit's answer is lost.
	created := now()
	var id int64
	err := s.inTx("create run", false, func(ctx context.Context, tx pgx.Tx, retried bool) error {
		if retried {
			err := tx.QueryRow(ctx, "SELECT id FROM runs WHERE created_at = $1 AND config = $2 ORDER BY id DESC LIMIT 1", created, config).Scan(&id)
			if err == nil || !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
		}
		return tx.QueryRow(ctx, "INSERT INTO runs(config, created_at) VALUES ($1, $2) RETURNING id", config, created).Scan(&id)
	})
	if err != nil {
		return 0, fmt.Errorf("create run: %w", err)
	}
	return id, nil
}

// LatestRun returns the most recently created run and its configuration; ErrNoRun if none.
func (s *Store) LatestRun() (int64, []byte, error) {
	var id int64
	var config []byte
	err := s.do("latest run", func(ctx context.Context, c *pgx.Conn, _ bool) error {
		return c.QueryRow(ctx, "SELECT id, config FROM runs ORDER BY id DESC LIMIT 1").Scan(&id, &config)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, fmt.Errorf("latest run: %w", store.ErrNoRun)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("latest run: %w", err)
	}
	return id, config, nil
}

// RunConfig returns the configuration of run runID; ErrNoRun if there is no such run.
func (s *Store) RunConfig(runID int64) ([]byte, error) {
	var config []byte
	err := s.do("run config", func(ctx context.Context, c *pgx.Conn, _ bool) error {
		return c.QueryRow(ctx, "SELECT config FROM runs WHERE id = $1", runID).Scan(&config)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("run %d: %w", runID, store.ErrNoRun)
	}
	if err != nil {
		return nil, fmt.Errorf("run %d: %w", runID, err)
	}
	return config, nil
}

// DeleteRunWithoutRounds deletes run runID, with its initial model and public values, if no
// round of it was committed, and reports whether it did. A run with a committed round is never
// deleted (false, nil); ErrNoRun if there is no such run (after a lost answer, a run gone on
// retry counts as deleted by the first attempt).
func (s *Store) DeleteRunWithoutRounds(runID int64) (bool, error) {
	deleted := false
	err := s.inTx("delete run", false, func(ctx context.Context, tx pgx.Tx, retried bool) error {
		if err := lockRun(ctx, tx, runID); err != nil {
			if retried && errors.Is(err, store.ErrNoRun) {
				deleted = true
				return nil
			}
			return err
		}
		last, _, err := lastRoundInfo(ctx, tx, runID)
		if err != nil || last > 0 {
			return err
		}
		for _, q := range []string{"DELETE FROM rounds WHERE run_id = $1", "DELETE FROM public WHERE run_id = $1", "DELETE FROM runs WHERE id = $1"} {
			if _, err := tx.Exec(ctx, q, runID); err != nil {
				return err
			}
		}
		deleted = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("delete run %d: %w", runID, err)
	}
	return deleted, nil
}

// SaveInitialModel stores the model a run starts from, as round 0. It may be replaced until
// round 1 is committed, not after.
func (s *Store) SaveInitialModel(runID int64, model []float32) error {
	blob, sum := store.EncodeModel(model)
	err := s.inTx("save initial model", false, func(ctx context.Context, tx pgx.Tx, _ bool) error {
		if err := lockRun(ctx, tx, runID); err != nil {
			return err
		}
		last, _, err := lastRoundInfo(ctx, tx, runID)
		if err != nil {
			return err
		}
		if last > 0 {
			return fmt.Errorf("run %d already has %d committed rounds", runID, last)
		}
		_, err = tx.Exec(ctx, `INSERT INTO rounds(run_id, round, model, model_len, model_sha256, committed_at)
			VALUES ($1, 0, $2, $3, $4, $5)
			ON CONFLICT (run_id, round) DO UPDATE SET model = excluded.model, model_len = excluded.model_len,
				model_sha256 = excluded.model_sha256, committed_at = excluded.committed_at`,
			runID, blob, len(model), sum[:], now())
		return err
	})
	if err != nil {
		return fmt.Errorf("save initial model of run %d: %w", runID, err)
	}
	return nil
}

// CommitRound stores, in one transaction, everything a completed round produced: the global
// model after it, its metrics (JSON), the privacy accountant state (JSON, may be nil) and any
// strategy or server-optimiser state (opaque, may be nil). Rounds are committed in order:
// round must be one more than the last committed round (1 for the first). A retry after a lost
// answer that finds this very round (same model, metrics and states) already stored succeeds.
func (s *Store) CommitRound(runID int64, round int, model []float32, metrics, accountant, strategyState []byte) error {
	if err := store.CheckCommit(runID, round, metrics, accountant); err != nil {
		return err
	}
	blob, sum := store.EncodeModel(model)
	err := s.inTx("commit round", false, func(ctx context.Context, tx pgx.Tx, retried bool) error {
		if err := lockRun(ctx, tx, runID); err != nil {
			return err
		}
		last, lastLen, err := lastRoundInfo(ctx, tx, runID)
		if err != nil {
			return err
		}
		if retried && last == round {
			same, err := sameRound(ctx, tx, runID, round, sum[:], metrics, accountant, strategyState)
			if err != nil || same {
				return err // committed by the attempt whose answer was lost
			}
		}
		if err := store.CheckNext(round, len(model), last, lastLen); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO rounds(run_id, round, model, model_len, model_sha256, metrics, accountant, strategy_state, committed_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			runID, round, blob, len(model), sum[:], metrics, accountant, strategyState, now())
		return err
	})
	if err != nil {
		return fmt.Errorf("commit round %d of run %d: %w", round, runID, err)
	}
	return nil
}

// sameRound reports whether the stored round is exactly the one being committed.
func sameRound(ctx context.Context, tx pgx.Tx, runID int64, round int, sum, metrics, accountant, strategyState []byte) (bool, error) {
	var same bool
	err := tx.QueryRow(ctx, `SELECT model_sha256 = $3 AND metrics = $4 AND accountant IS NOT DISTINCT FROM $5
			AND strategy_state IS NOT DISTINCT FROM $6
		FROM rounds WHERE run_id = $1 AND round = $2`, runID, round, sum, metrics, accountant, strategyState).Scan(&same)
	return same, err
}

// LastRound returns the latest committed round of a run with its model, accountant state and
// strategy state. With no committed round it returns round 0 and the initial model saved by
// SaveInitialModel (nil if none was saved). A model that fails its length or checksum check is
// an error wrapping ErrCorrupt.
func (s *Store) LastRound(runID int64) (round int, model []float32, accountant, strategyState []byte, err error) {
	err = s.inTx("last round", true, func(ctx context.Context, tx pgx.Tx, _ bool) error {
		round, model, accountant, strategyState = 0, nil, nil, nil
		if err := runExists(ctx, tx, runID); err != nil {
			return err
		}
		var blob, sum []byte
		var n int
		e := tx.QueryRow(ctx, `SELECT round, model, model_len, model_sha256, accountant, strategy_state
			FROM rounds WHERE run_id = $1 ORDER BY round DESC LIMIT 1`, runID).
			Scan(&round, &blob, &n, &sum, &accountant, &strategyState)
		if errors.Is(e, pgx.ErrNoRows) {
			round = 0
			return nil
		}
		if e != nil {
			return e
		}
		model, e = store.DecodeModel(blob, n, sum)
		if e != nil {
			return fmt.Errorf("model of round %d: %w", round, e)
		}
		return nil
	})
	if err != nil {
		return 0, nil, nil, nil, fmt.Errorf("last round of run %d: %w", runID, err)
	}
	return round, model, accountant, strategyState, nil
}

// RoundModel returns the global model after round (0: the initial model).
func (s *Store) RoundModel(runID int64, round int) ([]float32, error) {
	var blob, sum []byte
	var n int
	err := s.do("round model", func(ctx context.Context, c *pgx.Conn, _ bool) error {
		return c.QueryRow(ctx, "SELECT model, model_len, model_sha256 FROM rounds WHERE run_id = $1 AND round = $2", runID, round).
			Scan(&blob, &n, &sum)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("model of round %d of run %d: %w", round, runID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("model of round %d of run %d: %w", round, runID, err)
	}
	model, err := store.DecodeModel(blob, n, sum)
	if err != nil {
		return nil, fmt.Errorf("model of round %d of run %d: %w", round, runID, err)
	}
	return model, nil
}

// History returns the metrics (JSON) of every committed round of a run, in round order:
// element i belongs to round i+1.
func (s *Store) History(runID int64) ([][]byte, error) {
	var out [][]byte
	err := s.inTx("history", true, func(ctx context.Context, tx pgx.Tx, _ bool) error {
		out = nil
		if err := runExists(ctx, tx, runID); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT round, metrics FROM rounds WHERE run_id = $1 AND round > 0 ORDER BY round", runID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var round int
			var m []byte
			if err := rows.Scan(&round, &m); err != nil {
				return err
			}
			if round != len(out)+1 {
				return fmt.Errorf("%w: round %d missing from history", store.ErrCorrupt, len(out)+1)
			}
			out = append(out, m)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("history of run %d: %w", runID, err)
	}
	return out, nil
}

// RegisterClient records that the client name was seen with the certificate serial certSerial:
// it inserts a new client or updates the serial and last-seen time of a known one.
func (s *Store) RegisterClient(name string, certSerial string) error {
	if name == "" || len(name) > 256 {
		return fmt.Errorf("register client: invalid name %q", name)
	}
	t := now()
	err := s.do("register client", func(ctx context.Context, c *pgx.Conn, _ bool) error {
		_, err := c.Exec(ctx, `INSERT INTO clients(name, cert_serial, first_seen, last_seen) VALUES ($1, $2, $3, $3)
			ON CONFLICT (name) DO UPDATE SET cert_serial = excluded.cert_serial, last_seen = excluded.last_seen`,
			name, certSerial, t)
		return err
	})
	if err != nil {
		return fmt.Errorf("register client %q: %w", name, err)
	}
	return nil
}

// Clients returns the client registry, ordered by name.
func (s *Store) Clients() ([]store.ClientRecord, error) {
	var out []store.ClientRecord
	err := s.do("clients", func(ctx context.Context, c *pgx.Conn, _ bool) error {
		out = nil
		rows, err := c.Query(ctx, "SELECT name, cert_serial, first_seen, last_seen FROM clients ORDER BY name")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r store.ClientRecord
			var first, last string
			if err := rows.Scan(&r.Name, &r.CertSerial, &first, &last); err != nil {
				return err
			}
			if r.FirstSeen, err = time.Parse(time.RFC3339Nano, first); err != nil {
				return fmt.Errorf("%w: first_seen of %q: %w", store.ErrCorrupt, r.Name, err)
			}
			if r.LastSeen, err = time.Parse(time.RFC3339Nano, last); err != nil {
				return fmt.Errorf("%w: last_seen of %q: %w", store.ErrCorrupt, r.Name, err)
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("clients: %w", err)
	}
	return out, nil
}

// PutPublic stores public material of a run under key (for example the HE committee's
// collective public key), replacing any earlier value.
func (s *Store) PutPublic(runID int64, key string, value []byte) error {
	if key == "" {
		return fmt.Errorf("put public value of run %d: empty key", runID)
	}
	if value == nil {
		value = []byte{}
	}
	err := s.inTx("put public", false, func(ctx context.Context, tx pgx.Tx, _ bool) error {
		if err := lockRun(ctx, tx, runID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO public(run_id, key, value) VALUES ($1, $2, $3)
			ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value`, runID, key, value)
		return err
	})
	if err != nil {
		return fmt.Errorf("put public %q of run %d: %w", key, runID, err)
	}
	return nil
}

// GetPublic returns the public value stored under key; ErrNotFound if there is none.
func (s *Store) GetPublic(runID int64, key string) ([]byte, error) {
	var v []byte
	err := s.do("get public", func(ctx context.Context, c *pgx.Conn, _ bool) error {
		return c.QueryRow(ctx, "SELECT value FROM public WHERE run_id = $1 AND key = $2", runID, key).Scan(&v)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("public %q of run %d: %w", key, runID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("public %q of run %d: %w", key, runID, err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// Check verifies the schema version, that every run's rounds are numbered without a gap, and
// every stored model's length and checksum. It reads every model: use it in tools and tests.
// (PostgreSQL checks its own pages: data_checksums, amcheck; this checks what the store wrote.)
func (s *Store) Check() error {
	err := s.inTx("check", true, func(ctx context.Context, tx pgx.Tx, _ bool) error {
		var v int
		if err := tx.QueryRow(ctx, "SELECT version FROM schema_version WHERE id = 1").Scan(&v); err != nil {
			return fmt.Errorf("schema version: %w", err)
		}
		if v != SchemaVersion {
			return fmt.Errorf("schema version %d, want %d", v, SchemaVersion)
		}
		rows, err := tx.Query(ctx, "SELECT run_id, round, model, model_len, model_sha256 FROM rounds ORDER BY run_id, round")
		if err != nil {
			return err
		}
		defer rows.Close()
		var lastRun int64 = -1
		want := 0
		for rows.Next() {
			var run int64
			var round, n int
			var blob, sum []byte
			if err := rows.Scan(&run, &round, &blob, &n, &sum); err != nil {
				return err
			}
			if run != lastRun {
				lastRun, want = run, round
				if round > 1 {
					return fmt.Errorf("run %d: %w: rounds 1 to %d missing", run, store.ErrCorrupt, round-1)
				}
			}
			if round != want {
				return fmt.Errorf("run %d: %w: round %d missing", run, store.ErrCorrupt, want)
			}
			want++
			if _, err := store.DecodeModel(blob, n, sum); err != nil {
				return fmt.Errorf("run %d round %d: %w", run, round, err)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return fmt.Errorf("check run store: %w", err)
	}
	return nil
}

func runExists(ctx context.Context, tx pgx.Tx, runID int64) error {
	var one int
	err := tx.QueryRow(ctx, "SELECT 1 FROM runs WHERE id = $1", runID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("run %d: %w", runID, store.ErrNoRun)
	}
	return err
}

// lockRun is runExists for a write: it locks the run's row until the transaction ends, so that
// writers to one run (there is one, by the writer lock, but a lock can be lost) take turns.
func lockRun(ctx context.Context, tx pgx.Tx, runID int64) error {
	var one int
	err := tx.QueryRow(ctx, "SELECT 1 FROM runs WHERE id = $1 FOR UPDATE", runID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("run %d: %w", runID, store.ErrNoRun)
	}
	return err
}

// lastRoundInfo returns the last stored round of a run (0 if none) and the parameter count of
// its model (-1 if there is no stored round at all).
func lastRoundInfo(ctx context.Context, tx pgx.Tx, runID int64) (round, modelLen int, err error) {
	err = tx.QueryRow(ctx, "SELECT round, model_len FROM rounds WHERE run_id = $1 ORDER BY round DESC LIMIT 1", runID).
		Scan(&round, &modelLen)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, -1, nil
	}
	return round, modelLen, err
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }
