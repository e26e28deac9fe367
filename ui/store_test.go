package ui

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"shoal/fl"
	"shoal/store"
	"shoal/store/backend"
	"shoal/store/postgres/pgtest"
)

// A server's run store is served as runs: configuration, rounds and ε as committed.
func TestOpenStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fl.db")
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	id, err := st.CreateRun([]byte(`{"Rounds": 3, "DP": "central", "MaxEpsilon": 4, "Delta": 1e-5, "Model": "2nn"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SaveInitialModel(id, []float32{0, 0}); err != nil {
		t.Fatal(err)
	}
	for r := 1; r <= 2; r++ {
		m, _ := json.Marshal(fl.RoundReport{Round: r, Accuracy: 0.5 + 0.1*float64(r), Epsilon: float64(r), Delta: 1e-5, Participants: 3, Seconds: 1})
		if err := st.CommitRound(id, r, []float32{float32(r), 0}, m, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Read while the server still holds the store open.
	sources, err := OpenStore(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if len(sources) != 1 {
		t.Fatalf("%d runs", len(sources))
	}
	r := sources[0].Snapshot()
	if r.Round != 2 || r.Rounds != 3 || !r.DP || r.MaxEpsilon != 4 || r.State != StateStopped || len(r.History) != 2 ||
		r.History[1].Accuracy != 0.7 || r.History[1].Epsilon != 2 {
		t.Fatalf("stored run %+v", r)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

// A PostgreSQL run store (--store postgres://…) is served as an SQLite one is, and a message
// about it never shows the database password.
func TestOpenStorePostgres(t *testing.T) {
	spec := pgtest.NewStore(t)
	u, err := url.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	if pw == "" {
		t.Fatal("the test database has no password: nothing to check")
	}
	st, err := backend.Open(context.Background(), spec, backend.Create, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := OpenStore(context.Background(), spec); err == nil || strings.Contains(err.Error(), pw) ||
		!strings.Contains(err.Error(), "holds no run") {
		t.Fatalf("empty store: %v", err)
	}
	id, err := st.CreateRun([]byte(`{"Rounds": 2, "DP": "off", "Store": "` + backend.Redact(spec) + `"}`))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := json.Marshal(fl.RoundReport{Round: 1, Accuracy: 0.5, Participants: 3, Seconds: 1})
	if err := st.CommitRound(id, 1, []float32{1, 0}, m, nil, nil); err != nil {
		t.Fatal(err)
	}
	sources, err := OpenStore(context.Background(), spec)
	if err != nil || len(sources) != 1 {
		t.Fatalf("%d runs, %v", len(sources), err)
	}
	r := sources[0].Snapshot()
	b, _ := json.Marshal(r)
	if r.Round != 1 || r.Rounds != 2 || strings.Contains(string(b), pw) {
		t.Fatalf("stored run %s", b)
	}
}
