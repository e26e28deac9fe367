package fl

import (
	"context"
	"errors"
	"fmt"
)

// ErrRoundAbandoned marks a round that released nothing (too few survivors for a secure sum,
// for example); the engine leaves the global model unchanged and goes on.
var ErrRoundAbandoned = errors.New("round abandoned")

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
	// Sensitivity is the largest L2 norm one client's contribution to the sum can have when its
	// update (dim entries) is clipped to L2 norm clip and weighted 1: clip for an exact sum,
	// more for a protocol that quantises (its rounding can lengthen the update). Central DP
	// calibrates its noise to it (DPConfig.Sensitivity).
	Sensitivity(clip float64, dim int) float64
	// NewServer begins the server's half of a round among the clients that hold inputs;
	// maxWeight is the largest of their aggregation weights (1 under unit weights), which a
	// quantising protocol scales by.
	NewServer(round int, clients []ClientID, dim int, maxWeight float64) (SumServer, error)
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

// HandleSafely passes msg to a client's protocol half and turns a panic inside it into an
// error, so that a malformed server message can cost the client its round, never its process.
// The simulator and the network client both call it.
func HandleSafely(c SumClient, msg []byte) (reply []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("protocol client crashed: %v", r)
		}
	}()
	return c.Handle(msg)
}

// FitSafely runs a client's local training and turns a panic inside it into an error.
func FitSafely(ctx context.Context, c Client, ins FitIns) (res FitRes, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("local training crashed: %v", r)
		}
	}()
	return c.Fit(ctx, ins)
}
