package store_test

// The run store's contract, tested on every backend: each test runs once per row of backends
// (SQLite, PostgreSQL), through backend.Open as cmd/shoal opens a --store. SQLite-only matters
// (file locks, WAL, damaged files) stay in the internal tests of package store.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"shoal/store"
	"shoal/store/backend"
	"shoal/store/postgres/pgtest"
)

func TestMain(m *testing.M) {
	// A killed writer's PostgreSQL session ends within milliseconds here; the tests that
	// expect ErrLocked need not wait the production default.
	backend.LockWait = 500 * time.Millisecond
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

// testBackend is one kind of run store and what its tests need to reach below the interface.
type testBackend struct {
	name string
	// fresh returns the --store value of a new, empty store.
	fresh func(t *testing.T) string
	// exec runs one statement on the store's database directly, as a damaged or newer program
	// would (SQLite and PostgreSQL spell some of them differently: see sqlFor).
	exec func(t *testing.T, spec, stmt string)
	// sqlFor picks the dialect's spelling of a statement.
	sqlFor func(sqlite, pg string) string
	// count runs a count query (one argument, $1) on the store's database directly.
	count func(t *testing.T, spec, query string, arg any) int
}

var backends = []testBackend{
	{
		name:  "sqlite",
		fresh: func(t *testing.T) string { return filepath.Join(t.TempDir(), "run.db") },
		exec: func(t *testing.T, spec, stmt string) {
			t.Helper()
			db, err := sql.Open("sqlite", spec)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		},
		sqlFor: func(sqlite, _ string) string { return sqlite },
		count: func(t *testing.T, spec, query string, arg any) int {
			t.Helper()
			db, err := sql.Open("sqlite", spec)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var n int
			if err := db.QueryRow(strings.ReplaceAll(query, "$1", "?"), arg).Scan(&n); err != nil {
				t.Fatalf("%s: %v", query, err)
			}
			return n
		},
	},
	{
		name:  "postgres",
		fresh: func(t *testing.T) string { return pgtest.NewStore(t) },
		exec: func(t *testing.T, spec, stmt string) {
			t.Helper()
			conn, err := pgx.Connect(context.Background(), spec)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			if _, err := conn.Exec(context.Background(), stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		},
		sqlFor: func(_, pg string) string { return pg },
		count: func(t *testing.T, spec, query string, arg any) int {
			t.Helper()
			conn, err := pgx.Connect(context.Background(), spec)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			var n int
			if err := conn.QueryRow(context.Background(), query, arg).Scan(&n); err != nil {
				t.Fatalf("%s: %v", query, err)
			}
			return n
		},
	},
}

// forEachBackend runs test once per backend.
func forEachBackend(t *testing.T, test func(t *testing.T, b testBackend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { test(t, b) })
	}
}

// testLogger sends the PostgreSQL store's reconnection messages to the test's log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func openStore(t *testing.T, spec string, mode backend.Mode) store.RunStore {
	t.Helper()
	s, err := backend.Open(context.Background(), spec, mode, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
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

func TestBackendRoundsLifecycle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		spec := b.fresh(t)
		s := openStore(t, spec, backend.Create)
		if _, _, err := s.LatestRun(); !errors.Is(err, store.ErrNoRun) {
			t.Fatalf("LatestRun of an empty store: %v, want ErrNoRun", err)
		}
		if _, err := s.CreateRun([]byte("{not json")); err == nil {
			t.Fatal("CreateRun accepted invalid JSON")
		}
		run, err := s.CreateRun([]byte(`{"rounds":3}`))
		if err != nil {
			t.Fatal(err)
		}
		if cfg, err := s.RunConfig(run); err != nil || string(cfg) != `{"rounds":3}` {
			t.Fatalf("RunConfig: %q %v", cfg, err)
		}
		if _, err := s.RunConfig(run + 5); !errors.Is(err, store.ErrNoRun) {
			t.Fatalf("RunConfig of an unknown run: %v", err)
		}
		if r, m, a, st, err := s.LastRound(run); err != nil || r != 0 || m != nil || a != nil || st != nil {
			t.Fatalf("LastRound of a new run: %d %v %q %q %v", r, m, a, st, err)
		}
		initial := []float32{1, 2, 3, float32(math.Inf(-1)), math.Float32frombits(0x7fc00123)} // NaN payload kept
		if err := s.SaveInitialModel(run, initial); err != nil {
			t.Fatal(err)
		}
		if r, m, _, _, err := s.LastRound(run); err != nil || r != 0 || !sameBits(m, initial) {
			t.Fatalf("LastRound after SaveInitialModel: %d %v %v", r, m, err)
		}
		if err := s.CommitRound(run, 2, initial, []byte(`{}`), nil, nil); err == nil || !strings.Contains(err.Error(), "out of order") {
			t.Fatalf("commit of round 2 first: %v", err)
		}
		if err := s.CommitRound(run, 1, []float32{1, 2}, []byte(`{}`), nil, nil); err == nil || !strings.Contains(err.Error(), "round 0 had 5") {
			t.Fatalf("commit of a model of another size: %v", err)
		}
		if err := s.SaveInitialModel(run, initial[:3]); err != nil { // replaceable until round 1
			t.Fatal(err)
		}
		initial = initial[:3]
		for r := 1; r <= 3; r++ {
			model := []float32{float32(r), float32(-r), 0.5}
			metrics := []byte(fmt.Sprintf(`{"round":%d,"loss":%g}`, r, 1/float64(r)))
			acct := []byte(fmt.Sprintf(`{"steps":%d}`, r))
			var strat []byte
			if r != 2 {
				strat = []byte{byte(r), 0, 0xff}
			}
			if err := s.CommitRound(run, r, model, metrics, acct, strat); err != nil {
				t.Fatal(err)
			}
		}
		for _, bad := range []struct {
			round         int
			metrics, acct []byte
			want          string
		}{
			{3, []byte(`{}`), nil, "out of order"},
			{5, []byte(`{}`), nil, "out of order"},
			{0, []byte(`{}`), nil, "numbered from 1"},
			{4, []byte(`{"a":`), nil, "metrics"},
			{4, nil, nil, "metrics"},
			{4, []byte(`{}`), []byte("eps=1"), "accountant"},
		} {
			if err := s.CommitRound(run, bad.round, initial, bad.metrics, bad.acct, nil); err == nil || !strings.Contains(err.Error(), bad.want) {
				t.Errorf("CommitRound(round %d, %q, %q): %v, want %q", bad.round, bad.metrics, bad.acct, err, bad.want)
			}
		}
		if err := s.CommitRound(run, 4, make([]float32, 4), []byte(`{}`), nil, nil); err == nil || !strings.Contains(err.Error(), "4 parameters, round 3 had 3") {
			t.Fatalf("commit of a resized model: %v", err)
		}
		if err := s.CommitRound(run+1, 1, initial, []byte(`{}`), nil, nil); !errors.Is(err, store.ErrNoRun) {
			t.Fatalf("commit to an unknown run: %v", err)
		}
		if err := s.SaveInitialModel(run, initial); err == nil {
			t.Fatal("SaveInitialModel after round 1 succeeded")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		// Everything survives reopening.
		s = openStore(t, spec, backend.Existing)
		defer s.Close()
		gotRun, cfg, err := s.LatestRun()
		if err != nil || gotRun != run || string(cfg) != `{"rounds":3}` {
			t.Fatalf("LatestRun: %d %q %v", gotRun, cfg, err)
		}
		r, m, acct, strat, err := s.LastRound(run)
		if err != nil || r != 3 || !sameBits(m, []float32{3, -3, 0.5}) || string(acct) != `{"steps":3}` || !bytes.Equal(strat, []byte{3, 0, 0xff}) {
			t.Fatalf("LastRound after reopen: %d %v %q %v %v", r, m, acct, strat, err)
		}
		hist, err := s.History(run)
		if err != nil || len(hist) != 3 {
			t.Fatalf("History: %d entries, %v", len(hist), err)
		}
		for i, h := range hist {
			var v struct{ Round int }
			if err := json.Unmarshal(h, &v); err != nil || v.Round != i+1 {
				t.Fatalf("History[%d] = %s", i, h)
			}
		}
		if m0, err := s.RoundModel(run, 0); err != nil || !sameBits(m0, initial) {
			t.Fatalf("RoundModel(0): %v %v", m0, err)
		}
		if m2, err := s.RoundModel(run, 2); err != nil || !sameBits(m2, []float32{2, -2, 0.5}) {
			t.Fatalf("RoundModel(2): %v %v", m2, err)
		}
		if _, err := s.RoundModel(run, 9); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("RoundModel(9): %v", err)
		}
		if _, err := s.History(run + 7); !errors.Is(err, store.ErrNoRun) {
			t.Fatalf("History of unknown run: %v", err)
		}
		if _, _, _, _, err := s.LastRound(run + 7); !errors.Is(err, store.ErrNoRun) {
			t.Fatalf("LastRound of unknown run: %v", err)
		}
		run2, err := s.CreateRun([]byte(`{"rounds":1}`))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CommitRound(run2, 1, nil, []byte(`{"round":1}`), nil, nil); err != nil {
			t.Fatalf("first round of a second run: %v", err)
		}
		if id, _, _ := s.LatestRun(); id != run2 {
			t.Fatalf("LatestRun = %d, want %d", id, run2)
		}
		if err := s.Check(); err != nil {
			t.Fatal(err)
		}
	})
}

// One writer: a second open is refused while the first holds the store, and succeeds once it
// is closed; a reader may open it beside the writer, sees rounds as they land, and cannot write.
func TestBackendOneWriter(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		spec := b.fresh(t)
		w := openStore(t, spec, backend.Create)
		run, err := w.CreateRun([]byte(`{"x":1}`))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.CommitRound(run, 1, []float32{1, 2}, []byte(`{"round":1}`), nil, nil); err != nil {
			t.Fatal(err)
		}
		for _, mode := range []backend.Mode{backend.Create, backend.Existing} {
			if s, err := backend.Open(context.Background(), spec, mode, testLogger(t)); !errors.Is(err, store.ErrLocked) {
				if err == nil {
					s.Close()
				}
				t.Fatalf("second writer: %v, want ErrLocked", err)
			} else {
				t.Logf("second writer: %v", err)
			}
		}
		r := openStore(t, spec, backend.ReadOnly)
		defer r.Close()
		if got, _, _, _, err := r.LastRound(run); err != nil || got != 1 {
			t.Fatalf("reader LastRound: %d %v", got, err)
		}
		if err := w.CommitRound(run, 2, []float32{3, 4}, []byte(`{"round":2}`), nil, nil); err != nil {
			t.Fatalf("writer blocked by reader: %v", err)
		}
		if h, err := r.History(run); err != nil || len(h) != 2 {
			t.Fatalf("reader History: %d %v", len(h), err)
		}
		if err := r.CommitRound(run, 3, []float32{5, 6}, []byte(`{}`), nil, nil); err == nil {
			t.Fatal("read-only store committed a round")
		}
		if err := r.RegisterClient("eve", ""); err == nil {
			t.Fatal("read-only store registered a client")
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		w2 := openStore(t, spec, backend.Existing)
		defer w2.Close()
		if got, _, _, _, err := w2.LastRound(run); err != nil || got != 2 {
			t.Fatalf("next writer LastRound: %d %v", got, err)
		}
	})
}

// Writers racing for the same round on one store: exactly one commits each round.
func TestBackendConcurrentCommit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		s := openStore(t, b.fresh(t), backend.Create)
		defer s.Close()
		run, err := s.CreateRun([]byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		model := make([]float32, 10000)
		for r := 1; r <= 5; r++ {
			var wg sync.WaitGroup
			errs := make([]error, 4)
			for w := range errs {
				wg.Go(func() { errs[w] = s.CommitRound(run, r, model, []byte(`{}`), nil, nil) })
			}
			wg.Wait()
			ok := 0
			for _, err := range errs {
				if err == nil {
					ok++
				} else if !strings.Contains(err.Error(), "out of order") {
					t.Fatalf("round %d: unexpected error %v", r, err)
				}
			}
			if ok != 1 {
				t.Fatalf("round %d committed %d times", r, ok)
			}
		}
	})
}

// Clients are upserted: a known client keeps its first-seen time and gets the serial and the
// time of its latest registration. Public values round-trip, large and empty ones included.
func TestBackendClientsAndPublic(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		s := openStore(t, b.fresh(t), backend.Create)
		defer s.Close()
		if err := s.RegisterClient("", "ab"); err == nil {
			t.Fatal("empty client name accepted")
		}
		before := time.Now().UTC()
		if err := s.RegisterClient("bob", "01"); err != nil {
			t.Fatal(err)
		}
		if err := s.RegisterClient("alice", "aa"); err != nil {
			t.Fatal(err)
		}
		first, err := s.Clients()
		if err != nil || len(first) != 2 || first[0].Name != "alice" || first[1].CertSerial != "01" ||
			first[1].FirstSeen.Before(before) || !first[1].LastSeen.Equal(first[1].FirstSeen) {
			t.Fatalf("Clients: %+v %v", first, err)
		}
		time.Sleep(2 * time.Millisecond)
		if err := s.RegisterClient("bob", "02"); err != nil {
			t.Fatal(err)
		}
		cl, err := s.Clients()
		if err != nil || len(cl) != 2 {
			t.Fatalf("Clients: %+v %v", cl, err)
		}
		bob := cl[1]
		if bob.CertSerial != "02" || !bob.FirstSeen.Equal(first[1].FirstSeen) || bob.LastSeen.Sub(first[1].LastSeen) < 2*time.Millisecond {
			t.Fatalf("upsert: before %+v after %+v", first[1], bob)
		}

		run, err := s.CreateRun([]byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetPublic(run, "he/pk"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("GetPublic of a missing key: %v", err)
		}
		if err := s.PutPublic(run+1, "he/pk", []byte{1}); !errors.Is(err, store.ErrNoRun) {
			t.Fatalf("PutPublic to unknown run: %v", err)
		}
		if err := s.PutPublic(run, "", []byte{1}); err == nil {
			t.Fatal("empty key accepted")
		}
		big := bytes.Repeat([]byte{7, 1}, 300000)
		for _, v := range [][]byte{{1, 2, 3}, big, {}} {
			if err := s.PutPublic(run, "he/pk", v); err != nil {
				t.Fatal(err)
			}
			got, err := s.GetPublic(run, "he/pk")
			if err != nil || !bytes.Equal(got, v) {
				t.Fatalf("GetPublic: %d bytes, %v; want %d", len(got), err, len(v))
			}
		}
	})
}

// A run that never committed a round is deleted with everything it stored; a run with a
// committed round never is, not even after the store was closed and reopened for a resume.
func TestBackendDeleteRunWithoutRounds(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		spec := b.fresh(t)
		s := openStore(t, spec, backend.Create)
		kept, err := s.CreateRun([]byte(`{"run":"kept"}`))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SaveInitialModel(kept, []float32{1, 2}); err != nil {
			t.Fatal(err)
		}
		if err := s.CommitRound(kept, 1, []float32{3, 4}, []byte(`{}`), nil, nil); err != nil {
			t.Fatal(err)
		}
		empty, err := s.CreateRun([]byte(`{"run":"empty"}`))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SaveInitialModel(empty, []float32{1, 2}); err != nil {
			t.Fatal(err)
		}
		if err := s.PutPublic(empty, "pk", []byte("key")); err != nil {
			t.Fatal(err)
		}
		if deleted, err := s.DeleteRunWithoutRounds(empty); err != nil || !deleted {
			t.Fatalf("delete of a run without rounds: %v %v", deleted, err)
		}
		rows := func(table string, run int64) int {
			col := "run_id"
			if table == "runs" {
				col = "id"
			}
			return b.count(t, spec, "SELECT count(*) FROM "+table+" WHERE "+col+" = $1", run)
		}
		for _, table := range []string{"runs", "rounds", "public"} {
			if n := rows(table, empty); n != 0 {
				t.Fatalf("%d rows of the deleted run left in %s", n, table)
			}
		}
		if _, err := s.RoundModel(empty, 0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("initial model of the deleted run: %v", err)
		}
		if _, err := s.GetPublic(empty, "pk"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("public value of the deleted run: %v", err)
		}
		if id, _, err := s.LatestRun(); err != nil || id != kept {
			t.Fatalf("latest run after the delete: %d %v, want %d", id, err, kept)
		}
		if _, err := s.DeleteRunWithoutRounds(empty); !errors.Is(err, store.ErrNoRun) {
			t.Fatalf("delete of a deleted run: %v, want ErrNoRun", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = openStore(t, spec, backend.Existing)
		defer s.Close()
		if deleted, err := s.DeleteRunWithoutRounds(kept); err != nil || deleted {
			t.Fatalf("delete of a run with a committed round: deleted %v, %v", deleted, err)
		}
		if round, model, _, _, err := s.LastRound(kept); err != nil || round != 1 || len(model) != 2 || model[0] != 3 {
			t.Fatalf("the resumed run after a refused delete: round %d, model %v, %v", round, model, err)
		}
		if n := rows("rounds", kept); n != 2 {
			t.Fatalf("the resumed run has %d stored rounds, want 2 (initial model and round 1)", n)
		}
	})
}

// Schema versions: reopening migrates nothing twice; a store written by a newer program is
// refused by every mode of opening; a missing store is not created by a resume.
func TestBackendSchemaVersions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		spec := b.fresh(t)
		if _, err := backend.Open(context.Background(), spec, backend.Existing, testLogger(t)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("resume from a store that does not exist: %v, want fs.ErrNotExist", err)
		}
		for i := 0; i < 3; i++ {
			s := openStore(t, spec, backend.Create)
			if err := s.Check(); err != nil {
				t.Fatal(err)
			}
			s.Close()
		}
		b.exec(t, spec, fmt.Sprintf("UPDATE schema_version SET version = %d", store.SchemaVersion+1))
		for _, mode := range []backend.Mode{backend.Create, backend.Existing, backend.ReadOnly} {
			_, err := backend.Open(context.Background(), spec, mode, testLogger(t))
			if !errors.Is(err, store.ErrFutureSchema) || !strings.Contains(err.Error(), fmt.Sprintf("schema version %d", store.SchemaVersion+1)) {
				t.Fatalf("open (mode %d) of a future schema: %v", mode, err)
			}
		}
	})
}

// A model damaged below the store (its bytes changed, its checksum not) is detected.
func TestBackendCorruptModelDetected(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		spec := b.fresh(t)
		s := openStore(t, spec, backend.Create)
		run, _ := s.CreateRun([]byte(`{}`))
		model := make([]float32, 5000)
		for i := range model {
			model[i] = 1234.5
		}
		if err := s.CommitRound(run, 1, model, []byte(`{}`), nil, nil); err != nil {
			t.Fatal(err)
		}
		s.Close()
		b.exec(t, spec, b.sqlFor("UPDATE rounds SET model = zeroblob(length(model)) WHERE round = 1",
			"UPDATE rounds SET model = decode(repeat('00', length(model)), 'hex') WHERE round = 1"))
		s = openStore(t, spec, backend.Existing)
		defer s.Close()
		if _, _, _, _, err := s.LastRound(run); !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), "checksum") {
			t.Fatalf("LastRound of a damaged model: %v", err)
		}
		if _, err := s.RoundModel(run, 1); !errors.Is(err, store.ErrCorrupt) {
			t.Fatalf("RoundModel of a damaged model: %v", err)
		}
		if err := s.Check(); !errors.Is(err, store.ErrCorrupt) {
			t.Fatalf("Check of a damaged model: %v", err)
		}
	})
}

// A database that holds another program's tables of the same names is refused and left alone.
func TestBackendForeignDatabaseRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		spec := b.fresh(t)
		b.exec(t, spec, "CREATE TABLE runs (id INTEGER PRIMARY KEY, athlete TEXT)")
		_, err := backend.Open(context.Background(), spec, backend.Create, testLogger(t))
		if err == nil || !strings.Contains(err.Error(), "not a Shoal run store") {
			t.Fatalf("open of a foreign database: %v", err)
		}
		b.exec(t, spec, "INSERT INTO runs (id, athlete) VALUES (1, 'still here')")
	})
}
