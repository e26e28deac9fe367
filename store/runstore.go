package store

// RunStore is the method set of a run store, whatever holds it: the embedded SQLite file of
// this package (*Store, the default) or a PostgreSQL database (package store/postgres) when more
// than one process must see the run. Callers (cmd/shoal's server, the coordinator tier) program
// against it; package store/backend opens the right one from a --store value.
//
// Every implementation keeps the same contract: a round is committed whole or not at all, in
// order; models come back bit-exact or as an error wrapping ErrCorrupt; one writer at a time
// (a second gets ErrLocked); a store written by a newer schema is refused with ErrFutureSchema.
// The errors ErrNoRun, ErrNotFound, ErrCorrupt, ErrFutureSchema and ErrLocked of this package are
// the ones every implementation wraps.
type RunStore interface {
	// CreateRun records a new run with its configuration (JSON) and returns its id.
	CreateRun(config []byte) (int64, error)
	// LatestRun returns the most recently created run and its configuration; ErrNoRun if none.
	LatestRun() (int64, []byte, error)
	// RunConfig returns the configuration of a run; ErrNoRun if there is no such run.
	RunConfig(runID int64) ([]byte, error)
	// DeleteRunWithoutRounds deletes a run that has no committed round and reports whether it did.
	DeleteRunWithoutRounds(runID int64) (bool, error)
	// SaveInitialModel stores round 0; replaceable until round 1 is committed.
	SaveInitialModel(runID int64, model []float32) error
	// CommitRound stores everything a round produced in one transaction; round must be one more
	// than the last committed round.
	CommitRound(runID int64, round int, model []float32, metrics, accountant, strategyState []byte) error
	// LastRound returns the latest committed round with its model and states (round 0 and the
	// initial model, or nil, when no round was committed).
	LastRound(runID int64) (round int, model []float32, accountant, strategyState []byte, err error)
	// RoundModel returns the global model after a round (0: the initial model); ErrNotFound if absent.
	RoundModel(runID int64, round int) ([]float32, error)
	// History returns the metrics of every committed round, element i for round i+1.
	History(runID int64) ([][]byte, error)
	// RegisterClient inserts a client or updates the serial and last-seen time of a known one.
	RegisterClient(name string, certSerial string) error
	// Clients returns the client registry ordered by name.
	Clients() ([]ClientRecord, error)
	// PutPublic stores public material of a run under key, replacing any earlier value.
	PutPublic(runID int64, key string, value []byte) error
	// GetPublic returns the public value under key; ErrNotFound if there is none.
	GetPublic(runID int64, key string) ([]byte, error)
	// Check verifies the whole store (every model's length and checksum); for tools and tests.
	Check() error
	// Path names the store for messages: a file path, or a connection URL without its password.
	Path() string
	// Close releases the store and its writer lock.
	Close() error
}

var _ RunStore = (*Store)(nil)
