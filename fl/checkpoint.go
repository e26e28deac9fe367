package fl

import (
	"encoding"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
)

// Stateful is implemented by the parts of a run that carry state from round to round and must
// save it so that a resumed run continues exactly: a server optimiser's momentum or moments, a
// DP mechanism's accountant and adaptive clip. A stateless strategy simply does not implement it.
type Stateful interface {
	// SaveState returns the state after the last completed round.
	SaveState() ([]byte, error)
	// RestoreState continues from a state SaveState returned; a state it cannot use is an error.
	RestoreState([]byte) error
}

// SamplerSource is the random stream the engine samples cohorts from. It must be able to save
// its position (math/rand/v2's PCG and ChaCha8 can) so a resumed run samples what an
// uninterrupted one would.
type SamplerSource interface {
	rand.Source
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}

// Checkpoint is the engine's whole state after a completed round, in the spirit of raft's
// Ready/Storage: the engine produces one after every round (Engine.Commit) and accepts one on
// resume (Engine.Restore). Persisting it is the caller's business (package store).
type Checkpoint struct {
	Round    int       // the last completed round
	Model    []float32 // the global model after Round
	Sampler  []byte    // the sampling stream's position
	Strategy []byte    // the strategy's state; nil when the strategy is stateless
	Privacy  []byte    // the DP mechanism's state; nil without DP
}

// checkpoint captures the engine's state after round.
func (e *Engine) checkpoint(round int, global []float32) (Checkpoint, error) {
	cp := Checkpoint{Round: round, Model: global}
	var err error
	if cp.Sampler, err = e.Source.MarshalBinary(); err != nil {
		return cp, fmt.Errorf("sampler state: %w", err)
	}
	if s, ok := e.Strategy.(Stateful); ok {
		if cp.Strategy, err = s.SaveState(); err != nil {
			return cp, fmt.Errorf("strategy %s state: %w", e.Strategy.Name(), err)
		}
	}
	if s, ok := e.Privacy.(Stateful); ok {
		if cp.Privacy, err = s.SaveState(); err != nil {
			return cp, fmt.Errorf("privacy state: %w", err)
		}
	}
	return cp, nil
}

// Restore makes the next Run continue after cp.Round from cp's model and states. Every part of
// the run that keeps state must find its state in cp: a missing or unreadable one is an error,
// never a silent restart from zero.
func (e *Engine) Restore(cp Checkpoint) error {
	if cp.Round < 1 {
		return fmt.Errorf("checkpoint of round %d: nothing to resume", cp.Round)
	}
	if len(cp.Model) == 0 {
		return errors.New("checkpoint holds no model")
	}
	if e.Source == nil {
		return errors.New("engine: no sampler source to restore")
	}
	if err := e.Source.UnmarshalBinary(cp.Sampler); err != nil {
		return fmt.Errorf("sampler state of round %d: %w", cp.Round, err)
	}
	if err := restorePart("strategy "+e.Strategy.Name(), e.Strategy, cp.Strategy, cp.Round); err != nil {
		return err
	}
	if e.Privacy != nil {
		if err := restorePart("privacy", e.Privacy, cp.Privacy, cp.Round); err != nil {
			return err
		}
	}
	e.resume = &cp
	e.resume.Model = slices.Clone(cp.Model)
	return nil
}

func restorePart(what string, part any, state []byte, round int) error {
	s, stateful := part.(Stateful)
	switch {
	case stateful && state == nil:
		return fmt.Errorf("%s keeps state, and the checkpoint of round %d holds none", what, round)
	case !stateful && state != nil:
		return fmt.Errorf("the checkpoint of round %d holds %s state, and this run's %s keeps none (was the run configured differently?)", round, what, what)
	case stateful:
		if err := s.RestoreState(state); err != nil {
			return fmt.Errorf("%s state of round %d: %w", what, round, err)
		}
	}
	return nil
}
