package fl

import (
	"errors"
)

// ErrRoundAbandoned marks a round that released nothing (too few survivors for a secure sum,
// for example); the engine leaves the global model unchanged and goes on.
var ErrRoundAbandoned = errors.New("round abandoned")

// ErrBudgetExhausted is returned by ServerPrivacy.CheckBudget when the next round would spend
// more privacy than allowed; the engine stops before it.
var ErrBudgetExhausted = errors.New("privacy budget exhausted")

// SumInput is one client's contribution to a secure sum. It never leaves the client in the
// clear: the client's SumClient holds it.
type SumInput struct {
	Update    []float32 // the (clipped) model delta
	Weight    float64   // the client's aggregation weight
	Unclipped float64   // 1 if the update was not clipped, for adaptive clipping
}

// SumResult is all the server learns from a secure sum.
type SumResult struct {
	Sum       []float64 // Σ Weightᵢ·Updateᵢ over the clients whose inputs were unmasked
	Weight    float64   // Σ Weightᵢ
	Unclipped float64   // Σ Unclippedᵢ
	Count     int       // number of clients in the sum
}

// SecureSum is the seam where a secure-aggregation protocol (SecAgg, SecAgg+, threshold HE)
// replaces the plain sum. Both halves are pure state machines: the engine carries their
// messages over the Transport (Exchange), one stage at a time, applies the stage deadline, and
// tells the server half who dropped out.
type SecureSum interface {
	Name() string
	// Describe states the protocol's parameters and threat model for the run report.
	Describe() string
	// Stages names the protocol's exchanges in order (for reports and dropout injection).
	Stages() []string
	// NewServer begins the server's half of a round among the clients that hold inputs.
	NewServer(round int, clients []ClientID, dim int) (SumServer, error)
	// NewClient begins client id's half of a round, holding its input; the server's first
	// message tells it the rest. A client addressed in a round without an input of its own (a
	// decryption-committee member not sampled this round, or any client during setup, round 0)
	// gets a half with an empty input.
	NewClient(round int, id ClientID, in SumInput) (SumClient, error)
}

// SecureSumSetup is implemented by protocols that need a one-time setup among some clients
// before the first round (the key ceremony of threshold HE). The engine runs the setup as
// round 0, stage by stage like a round, before round 1.
type SecureSumSetup interface {
	// SetupClients chooses who takes part in the setup among the n registered clients.
	SetupClients(n int) []ClientID
	// NewSetup begins the server's half of the setup; its Result is not used.
	NewSetup(clients []ClientID) (SumServer, error)
}

// SumServer is the server's half of a secure sum for one round.
type SumServer interface {
	// Next returns the messages of the next stage, one per client still in the protocol, or
	// done = true when the protocol has finished (then call Result). An error wrapping
	// ErrRoundAbandoned means too few clients remain.
	Next() (msgs map[ClientID][]byte, done bool, err error)
	// Receive takes a client's reply to the current stage; an error means the reply is
	// rejected (malformed, replayed, out of stage) and the client is treated as dropped.
	Receive(from ClientID, msg []byte) error
	// Drop records that a client did not answer the current stage.
	Drop(id ClientID)
	// Result is the decoded sum once Next has said done.
	Result() (SumResult, error)
}

// SumClient is a client's half of a secure sum for one round.
type SumClient interface {
	// Handle answers one server message; a nil reply means the client has nothing to send.
	Handle(msg []byte) (reply []byte, err error)
}

// ServerPrivacy is the server half of a differential-privacy mechanism: it sets the clip norm
// the clients use, turns the cohort's sum into the (noised) mean the strategy sees, and accounts.
type ServerPrivacy interface {
	// Describe states the mechanism, its placement and parameters for the run report.
	Describe() string
	// CheckBudget returns an error wrapping ErrBudgetExhausted if running the round would take
	// the spent ε past the allowed maximum.
	CheckBudget(round int) error
	// ConfigureFit sets ClipNorm (and LocalNoiseStd, UnitWeights) in the clients' configuration.
	ConfigureFit(round int, cfg FitConfig) FitConfig
	// Finalize turns the sum of count clipped updates (each weighted 1) into the mean estimate,
	// adding central noise, and updates adaptive clipping from the unclipped count.
	Finalize(round int, sum []float64, count int, unclipped float64) ([]float32, error)
	// Account records that round ran and returns the (ε, δ) spent so far.
	Account(round int) (epsilon, delta float64, err error)
}
