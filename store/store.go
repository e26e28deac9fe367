// Package store is Shoal's crash-safe run store: one embedded SQLite file (pure-Go driver
// modernc.org/sqlite, WAL journal, synchronous=FULL) that holds a run's configuration, the
// global model after every round, the metrics history, the privacy accountant state, server
// optimiser state, the client registry and the public material of the HE committee.
//
// Everything a round produced is committed in one transaction, so a server killed at any
// moment (SIGKILL, power loss) and reopened finds the last round either complete or absent,
// never half-written, and continues without losing or repeating a round. Model blobs carry
// their length and SHA-256 so corruption below SQLite is detected rather than trained on.
//
// The store knows nothing about models, strategies or accountants beyond bytes, float32
// vectors and JSON: it must not depend on any other Shoal package.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// DefaultFileName is the database file used when Open is given a directory.
const DefaultFileName = "shoal-run.db"

// applicationID marks a SQLite file as a Shoal run store (PRAGMA application_id, "SHOL").
const applicationID = 0x53484f4c

// Errors callers may test for with errors.Is.
var (
	// ErrNoRun: the store holds no run, or not the one asked for.
	ErrNoRun = errors.New("no such run")
	// ErrNotFound: no public value under that key.
	ErrNotFound = errors.New("not found")
	// ErrCorrupt: stored data failed its integrity check.
	ErrCorrupt = errors.New("run store corrupt")
	// ErrFutureSchema: the file was written by a newer Shoal.
	ErrFutureSchema = errors.New("run store schema is newer than this program")
	// ErrLocked: another live process (another server) has the store open.
	ErrLocked = errors.New("run store is in use")
)

// ClientRecord is one entry of the client registry.
type ClientRecord struct {
	Name       string
	CertSerial string
	FirstSeen  time.Time
	LastSeen   time.Time
}

// Store is an open run store. Its methods are safe for concurrent use.
type Store struct {
	db   *sql.DB
	path string
	lock *os.File // held while open; nil where locking is unavailable
}

// Open opens the run store at path, creating the file and its schema if it does not exist and
// migrating an older schema. If path is an existing directory, the store is the file
// DefaultFileName inside it. A file that is not a Shoal run store, or one written by a newer
// schema, is refused with an error. One process at a time may have a store open (a lock on
// the file PATH-lock, released by the kernel if the process dies): a second gets ErrLocked.
func Open(path string) (*Store, error) {
	return open(path, openMode{create: true, exclusive: true})
}

// OpenExisting is Open for a store that must already exist (resuming a run): a missing file is
// an error wrapping fs.ErrNotExist instead of a new, empty store.
func OpenExisting(path string) (*Store, error) {
	return open(path, openMode{exclusive: true})
}

// OpenReadOnly opens an existing store for reading while a server may be writing to it (for
// reports and inspection): no lock, no schema changes, every write refused. The file must be
// at this program's schema version.
func OpenReadOnly(path string) (*Store, error) {
	return open(path, openMode{readOnly: true})
}

type openMode struct {
	create    bool // create the file if missing
	exclusive bool // take the one-process lock
	readOnly  bool // query_only, no migration
}

func open(path string, mode openMode) (*Store, error) {
	if path == "" {
		return nil, errors.New("open run store: empty path")
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, DefaultFileName)
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if !mode.create {
			return nil, fmt.Errorf("open run store: %s does not exist: %w", path, fs.ErrNotExist)
		}
		if _, err := os.Stat(filepath.Dir(path)); err != nil {
			return nil, fmt.Errorf("open run store %s: directory: %w", path, err)
		}
	case err != nil:
		return nil, fmt.Errorf("open run store: %w", err)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("open run store: %s is not a regular file", path)
	}

	var lock *os.File
	if mode.exclusive {
		if lock, err = lockStore(path + "-lock"); err != nil {
			return nil, fmt.Errorf("open run store %s: %w", path, err)
		}
	}
	// Every pooled connection gets these pragmas; writes take the lock at BEGIN (immediate) so
	// two writers serialise instead of failing half-way with SQLITE_BUSY.
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Set("_txlock", "immediate")
	if mode.readOnly {
		q.Add("_pragma", "query_only(1)")
	}
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		unlock(lock)
		return nil, fmt.Errorf("open run store %s: %w", path, err)
	}
	s := &Store{db: db, path: path, lock: lock}
	if err := s.init(mode.readOnly); err != nil {
		db.Close()
		unlock(lock)
		return nil, fmt.Errorf("open run store %s: %w", path, err)
	}
	return s, nil
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Close closes the store. Committed rounds are durable whether or not Close is called.
func (s *Store) Close() error {
	err := s.db.Close()
	unlock(s.lock)
	s.lock = nil
	if err != nil {
		return fmt.Errorf("close run store %s: %w", s.path, err)
	}
	return nil
}

// unlock releases the store lock by closing its file (the lock file itself stays: removing it
// could race with another process that just opened it).
func unlock(f *os.File) {
	if f != nil {
		f.Close()
	}
}

func (s *Store) init(readOnly bool) error {
	ctx := context.Background()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return explain(err)
	}
	defer conn.Close()
	var appID int64
	if err := conn.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return explain(err)
	}
	var tables int
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&tables); err != nil {
		return explain(err)
	}
	switch {
	case appID == 0 && tables > 0:
		return errors.New("not a Shoal run store (an SQLite database of another program)")
	case appID != 0 && appID != applicationID:
		return fmt.Errorf("not a Shoal run store (SQLite application_id %#x)", appID)
	case readOnly && appID == 0:
		return errors.New("not a Shoal run store (empty file)")
	}
	if readOnly {
		var version int
		if err := conn.QueryRowContext(ctx, "SELECT version FROM schema_version WHERE id = 1").Scan(&version); err != nil {
			return fmt.Errorf("read schema version: %w", explain(err))
		}
		switch {
		case version > SchemaVersion:
			return fmt.Errorf("%w: file has schema version %d, this program knows up to %d; use a newer shoal", ErrFutureSchema, version, SchemaVersion)
		case version < SchemaVersion:
			return fmt.Errorf("file has schema version %d, this program needs %d: open it read-write once to migrate", version, SchemaVersion)
		}
		return nil
	}
	// WAL is a property of the file, set once; it survives reopening.
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return fmt.Errorf("set WAL journal: %w", explain(err))
	}
	if mode != "wal" {
		return fmt.Errorf("set WAL journal: SQLite kept journal_mode %q", mode)
	}
	return migrate(ctx, conn)
}

// explain turns SQLite's terse errors about damaged files into ones an operator can act on.
func explain(err error) error {
	if err == nil {
		return nil
	}
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "file is not a database"):
		return fmt.Errorf("%w: not an SQLite database, or its header is damaged: %w", ErrCorrupt, err)
	case strings.Contains(msg, "database disk image is malformed"):
		return fmt.Errorf("%w: the database file is damaged: %w", ErrCorrupt, err)
	case strings.Contains(msg, "unable to open database file"):
		return fmt.Errorf("cannot open the database file (permissions? read-only directory?): %w", err)
	}
	return err
}

// CreateRun records a new run with its configuration (JSON) and returns its id.
func (s *Store) CreateRun(config []byte) (int64, error) {
	if !json.Valid(config) {
		return 0, errors.New("create run: configuration is not valid JSON")
	}
	res, err := s.db.Exec("INSERT INTO runs(config, created_at) VALUES (?, ?)", config, now())
	if err != nil {
		return 0, fmt.Errorf("create run: %w", explain(err))
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("create run: %w", err)
	}
	return id, nil
}

// LatestRun returns the most recently created run and its configuration; ErrNoRun if none.
func (s *Store) LatestRun() (int64, []byte, error) {
	var id int64
	var config []byte
	err := s.db.QueryRow("SELECT id, config FROM runs ORDER BY id DESC LIMIT 1").Scan(&id, &config)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, fmt.Errorf("latest run: %w", ErrNoRun)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("latest run: %w", explain(err))
	}
	return id, config, nil
}

// RunConfig returns the configuration of run runID; ErrNoRun if there is no such run.
func (s *Store) RunConfig(runID int64) ([]byte, error) {
	var config []byte
	err := s.db.QueryRow("SELECT config FROM runs WHERE id = ?", runID).Scan(&config)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("run %d: %w", runID, ErrNoRun)
	}
	if err != nil {
		return nil, fmt.Errorf("run %d: %w", runID, explain(err))
	}
	return config, nil
}

// DeleteRunWithoutRounds deletes run runID, with its initial model and public values, if no
// round of it was committed, and reports whether it did: a run that never started (a server
// stopped or failing while it waited for clients) leaves nothing behind. A run with a
// committed round is never deleted (false, nil). ErrNoRun if there is no such run.
func (s *Store) DeleteRunWithoutRounds(runID int64) (bool, error) {
	deleted := false
	err := s.inTx(func(tx *sql.Tx) error {
		if err := runExists(tx, runID); err != nil {
			return err
		}
		last, _, err := lastRoundInfo(tx, runID)
		if err != nil || last > 0 {
			return err
		}
		// The schema cascades; the children go first all the same, so that a file whose
		// foreign keys are off keeps no orphans.
		for _, q := range []string{"DELETE FROM rounds WHERE run_id = ?", "DELETE FROM public WHERE run_id = ?",
			"DELETE FROM runs WHERE id = ?"} {
			if _, err := tx.Exec(q, runID); err != nil {
				return err
			}
		}
		deleted = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("delete run %d: %w", runID, explain(err))
	}
	return deleted, nil
}

// SaveInitialModel stores the model a run starts from, as round 0. It may be replaced until
// round 1 is committed, not after.
func (s *Store) SaveInitialModel(runID int64, model []float32) error {
	blob, sum := EncodeModel(model)
	err := s.inTx(func(tx *sql.Tx) error {
		if err := runExists(tx, runID); err != nil {
			return err
		}
		last, _, err := lastRoundInfo(tx, runID)
		if err != nil {
			return err
		}
		if last > 0 {
			return fmt.Errorf("run %d already has %d committed rounds", runID, last)
		}
		_, err = tx.Exec(`INSERT INTO rounds(run_id, round, model, model_len, model_sha256, committed_at)
			VALUES (?, 0, ?, ?, ?, ?)
			ON CONFLICT(run_id, round) DO UPDATE SET model = excluded.model, model_len = excluded.model_len,
				model_sha256 = excluded.model_sha256, committed_at = excluded.committed_at`,
			runID, blob, len(model), sum[:], now())
		return err
	})
	if err != nil {
		return fmt.Errorf("save initial model of run %d: %w", runID, explain(err))
	}
	return nil
}

// CommitRound stores, in one transaction, everything a completed round produced: the global
// model after it, its metrics (JSON), the privacy accountant state (JSON, may be nil) and any
// strategy or server-optimiser state (opaque, may be nil). Rounds are committed in order:
// round must be one more than the last committed round (1 for the first).
func (s *Store) CommitRound(runID int64, round int, model []float32, metrics, accountant, strategyState []byte) error {
	if err := CheckCommit(runID, round, metrics, accountant); err != nil {
		return err
	}
	blob, sum := EncodeModel(model)
	err := s.inTx(func(tx *sql.Tx) error {
		if err := runExists(tx, runID); err != nil {
			return err
		}
		last, lastLen, err := lastRoundInfo(tx, runID)
		if err != nil {
			return err
		}
		if err := CheckNext(round, len(model), last, lastLen); err != nil {
			return err
		}
		_, err = tx.Exec(`INSERT INTO rounds(run_id, round, model, model_len, model_sha256, metrics, accountant, strategy_state, committed_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			runID, round, blob, len(model), sum[:], metrics, nullable(accountant), nullable(strategyState), now())
		return err
	})
	if err != nil {
		return fmt.Errorf("commit round %d of run %d: %w", round, runID, explain(err))
	}
	return nil
}

// LastRound returns the latest committed round of a run with its model, accountant state and
// strategy state. With no committed round it returns round 0 and the initial model saved by
// SaveInitialModel (nil if none was saved). A model that fails its length or checksum check is
// an error wrapping ErrCorrupt.
func (s *Store) LastRound(runID int64) (round int, model []float32, accountant, strategyState []byte, err error) {
	err = s.inReadTx(func(tx *sql.Tx) error {
		if err := runExists(tx, runID); err != nil {
			return err
		}
		var blob, sum []byte
		var n int
		e := tx.QueryRow(`SELECT round, model, model_len, model_sha256, accountant, strategy_state
			FROM rounds WHERE run_id = ? ORDER BY round DESC LIMIT 1`, runID).
			Scan(&round, &blob, &n, &sum, &accountant, &strategyState)
		if errors.Is(e, sql.ErrNoRows) {
			round = 0
			return nil
		}
		if e != nil {
			return e
		}
		model, e = DecodeModel(blob, n, sum)
		if e != nil {
			return fmt.Errorf("model of round %d: %w", round, e)
		}
		return nil
	})
	if err != nil {
		return 0, nil, nil, nil, fmt.Errorf("last round of run %d: %w", runID, explain(err))
	}
	return round, model, accountant, strategyState, nil
}

// RoundModel returns the global model after round (0: the initial model).
func (s *Store) RoundModel(runID int64, round int) ([]float32, error) {
	var blob, sum []byte
	var n int
	err := s.db.QueryRow("SELECT model, model_len, model_sha256 FROM rounds WHERE run_id = ? AND round = ?", runID, round).
		Scan(&blob, &n, &sum)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("model of round %d of run %d: %w", round, runID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("model of round %d of run %d: %w", round, runID, explain(err))
	}
	model, err := DecodeModel(blob, n, sum)
	if err != nil {
		return nil, fmt.Errorf("model of round %d of run %d: %w", round, runID, err)
	}
	return model, nil
}

// History returns the metrics (JSON) of every committed round of a run, in round order:
// element i belongs to round i+1.
func (s *Store) History(runID int64) ([][]byte, error) {
	var out [][]byte
	err := s.inReadTx(func(tx *sql.Tx) error {
		if err := runExists(tx, runID); err != nil {
			return err
		}
		rows, err := tx.Query("SELECT round, metrics FROM rounds WHERE run_id = ? AND round > 0 ORDER BY round", runID)
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
				return fmt.Errorf("%w: round %d missing from history", ErrCorrupt, len(out)+1)
			}
			out = append(out, m)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("history of run %d: %w", runID, explain(err))
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
	_, err := s.db.Exec(`INSERT INTO clients(name, cert_serial, first_seen, last_seen) VALUES (?, ?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET cert_serial = excluded.cert_serial, last_seen = excluded.last_seen`,
		name, certSerial, t, t)
	if err != nil {
		return fmt.Errorf("register client %q: %w", name, explain(err))
	}
	return nil
}

// Clients returns the client registry, ordered by name.
func (s *Store) Clients() ([]ClientRecord, error) {
	rows, err := s.db.Query("SELECT name, cert_serial, first_seen, last_seen FROM clients ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("clients: %w", explain(err))
	}
	defer rows.Close()
	var out []ClientRecord
	for rows.Next() {
		var r ClientRecord
		var first, last string
		if err := rows.Scan(&r.Name, &r.CertSerial, &first, &last); err != nil {
			return nil, fmt.Errorf("clients: %w", err)
		}
		if r.FirstSeen, err = time.Parse(time.RFC3339Nano, first); err != nil {
			return nil, fmt.Errorf("clients: %w: first_seen of %q: %w", ErrCorrupt, r.Name, err)
		}
		if r.LastSeen, err = time.Parse(time.RFC3339Nano, last); err != nil {
			return nil, fmt.Errorf("clients: %w: last_seen of %q: %w", ErrCorrupt, r.Name, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clients: %w", explain(err))
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
	err := s.inTx(func(tx *sql.Tx) error {
		if err := runExists(tx, runID); err != nil {
			return err
		}
		_, err := tx.Exec(`INSERT INTO public(run_id, key, value) VALUES (?, ?, ?)
			ON CONFLICT(run_id, key) DO UPDATE SET value = excluded.value`, runID, key, value)
		return err
	})
	if err != nil {
		return fmt.Errorf("put public %q of run %d: %w", key, runID, explain(err))
	}
	return nil
}

// GetPublic returns the public value stored under key; ErrNotFound if there is none.
func (s *Store) GetPublic(runID int64, key string) ([]byte, error) {
	var v []byte
	err := s.db.QueryRow("SELECT value FROM public WHERE run_id = ? AND key = ?", runID, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("public %q of run %d: %w", key, runID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("public %q of run %d: %w", key, runID, explain(err))
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// Check runs SQLite's integrity check and verifies every stored model's length and checksum.
// It reads the whole file: use it in tools and tests, not on every start.
func (s *Store) Check() error {
	rows, err := s.db.Query("PRAGMA integrity_check")
	if err != nil {
		return fmt.Errorf("check run store: %w", explain(err))
	}
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			return fmt.Errorf("check run store: %w", err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("check run store: %w", explain(err))
	}
	if len(problems) > 0 {
		return fmt.Errorf("check run store: %w: %v", ErrCorrupt, problems)
	}
	models, err := s.db.Query("SELECT run_id, round, model, model_len, model_sha256 FROM rounds ORDER BY run_id, round")
	if err != nil {
		return fmt.Errorf("check run store: %w", explain(err))
	}
	defer models.Close()
	for models.Next() {
		var run int64
		var round, n int
		var blob, sum []byte
		if err := models.Scan(&run, &round, &blob, &n, &sum); err != nil {
			return fmt.Errorf("check run store: %w", err)
		}
		if _, err := DecodeModel(blob, n, sum); err != nil {
			return fmt.Errorf("check run store: run %d round %d: %w", run, round, err)
		}
	}
	return models.Err()
}

func (s *Store) inTx(f func(*sql.Tx) error) error {
	tx, err := s.db.Begin()
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// inReadTx runs f in a read-only transaction so that its queries see one snapshot.
func (s *Store) inReadTx(f func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(context.Background(), &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return f(tx)
}

func runExists(tx *sql.Tx, runID int64) error {
	var one int
	err := tx.QueryRow("SELECT 1 FROM runs WHERE id = ?", runID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("run %d: %w", runID, ErrNoRun)
	}
	return err
}

// lastRoundInfo returns the last stored round of a run (0 if none) and the parameter count of
// its model (-1 if there is no stored round at all).
func lastRoundInfo(tx *sql.Tx, runID int64) (round, modelLen int, err error) {
	err = tx.QueryRow("SELECT round, model_len FROM rounds WHERE run_id = ? ORDER BY round DESC LIMIT 1", runID).
		Scan(&round, &modelLen)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, -1, nil
	}
	return round, modelLen, err
}

// nullable stores nil as SQL NULL and anything else, even empty, as a blob.
func nullable(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }
