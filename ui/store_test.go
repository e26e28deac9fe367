package ui

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"shoal/fl"
	"shoal/store"
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
	sources, err := OpenStore(path)
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
