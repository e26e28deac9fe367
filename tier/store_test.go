package tier

import (
	"path/filepath"
	"testing"

	"shoal/store"
)

var _ RunStore = (*store.Store)(nil)

// A takeover resumes the run etcd names, after its last committed round, and refuses a store
// whose latest run is another.
func TestCheckTakeover(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "run.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	id, err := st.CreateRun([]byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SaveInitialModel(id, []float32{0, 0}); err != nil {
		t.Fatal(err)
	}
	for r := 1; r <= 3; r++ {
		if err := st.CommitRound(id, r, []float32{float32(r), 0}, []byte(`{}`), nil, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if round, err := CheckTakeover(st, &RunRecord{StoreRun: id, Name: "x"}); err != nil || round != 3 {
		t.Fatalf("takeover after round %d, %v; want 3", round, err)
	}
	if _, err := CheckTakeover(st, &RunRecord{StoreRun: id + 1, Name: "x"}); err == nil {
		t.Fatal("a record naming another run accepted")
	}
}
