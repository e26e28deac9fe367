package store

import (
	"errors"
	"path/filepath"
	"testing"
)

// rowCount counts the rows of table that belong to run (runs: the run itself).
func rowCount(t *testing.T, s *Store, table string, run int64) int {
	t.Helper()
	col := "run_id"
	if table == "runs" {
		col = "id"
	}
	var n int
	if err := s.db.QueryRow("SELECT count(*) FROM "+table+" WHERE "+col+" = ?", run).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A run that never committed a round is deleted with everything it stored; a run with a
// committed round never is, not even after the store was closed and reopened for a resume.
func TestDeleteRunWithoutRounds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
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
	deleted, err := s.DeleteRunWithoutRounds(empty)
	if err != nil || !deleted {
		t.Fatalf("delete of a run without rounds: %v %v", deleted, err)
	}
	for _, table := range []string{"runs", "rounds", "public"} {
		if n := rowCount(t, s, table, empty); n != 0 {
			t.Fatalf("%d rows of the deleted run left in %s", n, table)
		}
	}
	if id, _, err := s.LatestRun(); err != nil || id != kept {
		t.Fatalf("latest run after the delete: %d %v, want %d", id, err, kept)
	}
	if _, err := s.DeleteRunWithoutRounds(empty); !errors.Is(err, ErrNoRun) {
		t.Fatalf("delete of a deleted run: %v, want ErrNoRun", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopened as --resume does: the run with a committed round stays, whole.
	s, err = OpenExisting(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if deleted, err := s.DeleteRunWithoutRounds(kept); err != nil || deleted {
		t.Fatalf("delete of a run with a committed round: deleted %v, %v", deleted, err)
	}
	round, model, _, _, err := s.LastRound(kept)
	if err != nil || round != 1 || len(model) != 2 || model[0] != 3 {
		t.Fatalf("the resumed run after a refused delete: round %d, model %v, %v", round, model, err)
	}
	if n := rowCount(t, s, "rounds", kept); n != 2 {
		t.Fatalf("the resumed run has %d stored rounds, want 2 (initial model and round 1)", n)
	}
}
