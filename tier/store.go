package tier

import "fmt"

// RunStore is what the tier needs of the run store: methods store.Store has, with its
// signatures, so that the SQLite store today and a PostgreSQL one behind the same methods both
// serve a population's coordinators.
type RunStore interface {
	LatestRun() (id int64, config []byte, err error)
	LastRound(runID int64) (round int, model []float32, accountant, strategyState []byte, err error)
	CommitRound(runID int64, round int, model []float32, metrics, accountant, strategyState []byte) error
	History(runID int64) ([][]byte, error)
}

// CheckTakeover confirms that the store holds the run etcd names (a coordinator must not resume
// another run of the same store) and returns its last committed round, where a new coordinator
// continues.
func CheckTakeover(st RunStore, rec *RunRecord) (int, error) {
	id, _, err := st.LatestRun()
	if err != nil {
		return 0, fmt.Errorf("run store: %w", err)
	}
	if id != rec.StoreRun {
		return 0, fmt.Errorf("etcd names run %d of the store for %s, and the store's latest run is %d", rec.StoreRun, rec.Name, id)
	}
	round, _, _, _, err := st.LastRound(id)
	if err != nil {
		return 0, fmt.Errorf("run store: run %d: %w", id, err)
	}
	return round, nil
}
