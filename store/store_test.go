package store

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "run.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
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

// TestConcurrentCommit: a second Open of a store in use is refused; and two writers racing for
// the same round (forced past the lock) never both succeed.
func TestConcurrentCommit(t *testing.T) {
	s := openTemp(t)
	run, err := s.CreateRun([]byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(s.Path()); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second Open of a store in use: %v", err)
	}
	other, err := open(s.Path(), openMode{}) // bypass the lock to race two writers on purpose
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	model := make([]float32, 10000)
	for r := 1; r <= 10; r++ {
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for w := range errs {
			st := s
			if w%2 == 1 {
				st = other
			}
			wg.Go(func() { errs[w] = st.CommitRound(run, r, model, []byte(`{}`), nil, nil) })
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
}

// Clients are upserted: a known client keeps its first-seen time and gets the serial and the
// time of its latest registration. On synctest's fake clock, the times are exact. (Public
// values, and the upsert on both backends: TestBackendClientsAndPublic.)
func TestClientsUpsertExactTimes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const pause = 2 * time.Millisecond
		s := openTemp(t)
		if err := s.RegisterClient("", "ab"); err == nil {
			t.Fatal("empty client name accepted")
		}
		registered := time.Now()
		if err := s.RegisterClient("bob", "01"); err != nil {
			t.Fatal(err)
		}
		if err := s.RegisterClient("alice", "aa"); err != nil {
			t.Fatal(err)
		}
		first, err := s.Clients()
		if err != nil || len(first) != 2 || first[0].Name != "alice" || first[1].CertSerial != "01" ||
			!first[1].FirstSeen.Equal(registered) || !first[1].LastSeen.Equal(registered) {
			t.Fatalf("Clients: %+v %v", first, err)
		}
		time.Sleep(pause) // on the bubble's fake clock: exactly pause passes
		if err := s.RegisterClient("bob", "02"); err != nil {
			t.Fatal(err)
		}
		cl, err := s.Clients()
		if err != nil || len(cl) != 2 {
			t.Fatalf("Clients: %+v %v", cl, err)
		}
		bob := cl[1]
		if bob.CertSerial != "02" || !bob.FirstSeen.Equal(first[1].FirstSeen) || bob.LastSeen.Sub(first[1].LastSeen) != pause {
			t.Fatalf("upsert %v later: before %+v after %+v", pause, first[1], bob)
		}
	})
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()

	if _, err := OpenExisting(filepath.Join(dir, "nope.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("OpenExisting of a missing file: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "no", "such", "dir", "run.db")); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("Open in a missing directory: %v", err)
	}
	if _, err := Open(""); err == nil {
		t.Fatal("Open(\"\") succeeded")
	}

	// A directory means the default file inside it.
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Path() != filepath.Join(dir, DefaultFileName) {
		t.Fatalf("Path = %s", s.Path())
	}
	s.Close()
	if s, err := OpenExisting(dir); err != nil {
		t.Fatalf("OpenExisting(dir): %v", err)
	} else {
		s.Close()
	}

	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("this is no database "), 300), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(garbage); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "not an SQLite database") {
		t.Fatalf("Open of a garbage file: %v", err)
	}

	// Someone else's SQLite database is left alone.
	foreign := filepath.Join(dir, "foreign.db")
	db, err := sql.Open("sqlite", foreign)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE photos(id INTEGER PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(foreign); err == nil || !strings.Contains(err.Error(), "not a Shoal run store") {
		t.Fatalf("Open of a foreign database: %v", err)
	}
	var tables int
	db, _ = sql.Open("sqlite", foreign)
	db.QueryRow("SELECT count(*) FROM sqlite_schema").Scan(&tables)
	db.Close()
	if tables != 1 {
		t.Fatalf("foreign database modified: %d tables", tables)
	}
}

func TestFutureSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec("UPDATE schema_version SET version = ?", SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = Open(path)
	if !errors.Is(err, ErrFutureSchema) || !strings.Contains(err.Error(), fmt.Sprintf("schema version %d", SchemaVersion+1)) {
		t.Fatalf("Open of a future schema: %v", err)
	}
	if _, err := OpenReadOnly(path); !errors.Is(err, ErrFutureSchema) {
		t.Fatalf("OpenReadOnly of a future schema: %v", err)
	}
}

func TestMigrationIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.db")
	for i := 0; i < 3; i++ {
		s, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		var v int
		if err := s.db.QueryRow("SELECT version FROM schema_version").Scan(&v); err != nil || v != SchemaVersion {
			t.Fatalf("schema version %d, %v", v, err)
		}
		var mode string
		if err := s.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
			t.Fatalf("journal mode %q %v", mode, err)
		}
		var sync, fk int
		if err := s.db.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil || sync != 2 {
			t.Fatalf("synchronous = %d, %v; want 2 (FULL)", sync, err)
		}
		if err := s.db.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
			t.Fatalf("foreign_keys = %d, %v", fk, err)
		}
		s.Close()
	}
}

// TestCorruptModelDetected damages the bytes of a stored model below SQLite, where SQLite itself
// would not notice, and expects the checksum to catch it.
func TestCorruptModelDetected(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	run, _ := s.CreateRun([]byte(`{}`))
	model := make([]float32, 5000)
	for i := range model {
		model[i] = 1234.5 // a pattern easy to find in the file
	}
	if err := s.CommitRound(run, 1, model, []byte(`{}`), nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // checkpoints the WAL into the main file
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pattern, _ := EncodeModel(model[:16])
	at := bytes.Index(data, pattern)
	if at < 0 {
		t.Fatal("model bytes not found in the database file")
	}
	data[at+4*100+1] ^= 0x40
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, _, _, err := s.LastRound(run); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("LastRound of a damaged model: %v", err)
	}
	if err := s.Check(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Check of a damaged model: %v", err)
	}
}

// TestTruncatedFile: a store cut short (a bad copy, a full disk) gives an error naming damage.
func TestTruncatedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	run, _ := s.CreateRun([]byte(`{}`))
	model := make([]float32, 20000)
	for r := 1; r <= 5; r++ {
		model[0] = float32(r)
		if err := s.CommitRound(run, r, model, []byte(`{}`), nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path)
	if err == nil {
		defer s.Close()
		_, _, _, _, err = s.LastRound(run)
		if err == nil {
			err = s.Check()
		}
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated store: %v, want an error wrapping ErrCorrupt", err)
	}
	t.Logf("truncated store: %v", err)
}

// TestReadOnlyWhileServing: a reader opens the store while the writer holds it, sees committed
// rounds as they land, and cannot write.
func TestReadOnlyWhileServing(t *testing.T) {
	w := openTemp(t)
	run, err := w.CreateRun([]byte(`{"x":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.CommitRound(run, 1, []float32{1, 2}, []byte(`{"round":1}`), nil, nil); err != nil {
		t.Fatal(err)
	}
	r, err := OpenReadOnly(w.Path())
	if err != nil {
		t.Fatal(err)
	}
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
	if _, err := OpenReadOnly(filepath.Join(t.TempDir(), "missing.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("OpenReadOnly of a missing file: %v", err)
	}
	empty := filepath.Join(t.TempDir(), "empty.db")
	os.WriteFile(empty, nil, 0o644)
	if _, err := OpenReadOnly(empty); err == nil || !strings.Contains(err.Error(), "not a Shoal run store") {
		t.Fatalf("OpenReadOnly of an empty file: %v", err)
	}
}
