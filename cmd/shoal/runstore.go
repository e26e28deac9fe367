package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"

	"shoal/fl"
	"shoal/store"
	"shoal/store/backend"
)

// serverRun is the server's run in its store (none without --store): the run id, the rounds
// committed before this process and the checkpoint to resume from.
type serverRun struct {
	st         store.RunStore // SQLite file, or PostgreSQL for a postgres:// URL
	id         int64
	history    []fl.RoundReport // committed by an earlier process of this run
	checkpoint *fl.Checkpoint   // the last committed round, with --resume
	created    bool             // this process recorded the run (not a resume)
}

// openServerRun opens (or creates, in an existing directory or database) --store and, with
// --resume, takes the run's configuration, history and last checkpoint from it.
func openServerRun(ctx context.Context, o *serverOptions, logger *slog.Logger) (*serverRun, error) {
	r := &serverRun{}
	if o.Store == "" {
		return r, nil
	}
	mode := backend.Create // in an existing directory: a typo must not create a new tree
	if o.Resume {
		mode = backend.Existing
	}
	var err error
	if r.st, err = backend.Open(ctx, o.Store, mode, logger); err != nil {
		return nil, fmt.Errorf("--store: %w", err)
	}
	if !o.Resume {
		return r, nil
	}
	if err := r.load(o); err != nil {
		r.close()
		return nil, fmt.Errorf("resume: %w", err)
	}
	return r, nil
}

func (r *serverRun) load(o *serverOptions) error {
	id, cfg, err := r.st.LatestRun()
	if err != nil {
		return err
	}
	r.id = id
	if err := o.restore(cfg); err != nil {
		return fmt.Errorf("stored configuration: %w", err)
	}
	rows, err := r.st.History(id)
	if err != nil {
		return err
	}
	for i, row := range rows {
		var rep fl.RoundReport
		if err := json.Unmarshal(row, &rep); err != nil {
			return fmt.Errorf("metrics of round %d: %w", i+1, err)
		}
		r.history = append(r.history, rep)
	}
	round, model, privacy, state, err := r.st.LastRound(id)
	if err != nil || round == 0 {
		return err // no committed round: the run starts over from its seed
	}
	var parts checkpointState
	if err := json.Unmarshal(state, &parts); err != nil {
		return fmt.Errorf("checkpoint of round %d: %w", round, err)
	}
	r.checkpoint = &fl.Checkpoint{Round: round, Model: model, Sampler: parts.Sampler, Strategy: parts.Strategy, Privacy: privacy}
	return nil
}

// checkpointState is how the store keeps the parts of a checkpoint it has no column of its own
// for: the sampler's position and the strategy's state.
type checkpointState struct {
	Sampler  []byte `json:"sampler"`
	Strategy []byte `json:"strategy,omitempty"`
}

// begin restores the engine from the checkpoint being resumed, or records a new run.
func (r *serverRun) begin(o serverOptions, plan *runPlan) error {
	if r.checkpoint != nil {
		// A checkpoint that does not fit this run stops the server: resuming with some state
		// silently reset would train (or account privacy) wrongly.
		if err := plan.engine.Restore(*r.checkpoint); err != nil {
			return fmt.Errorf("resume run %d: %w", r.id, err)
		}
		return nil
	}
	if r.st == nil || o.Resume {
		return nil
	}
	o.Store = backend.Redact(o.Store) // the recorded configuration keeps no password
	cfg, err := json.Marshal(o)
	if err != nil {
		return err
	}
	if r.id, err = r.st.CreateRun(cfg); err != nil {
		return fmt.Errorf("run store: %w", err)
	}
	r.created = true
	if err := r.st.SaveInitialModel(r.id, plan.params); err != nil {
		return fmt.Errorf("run store: %w", err)
	}
	return nil
}

// commit persists a round's checkpoint and metrics in one transaction.
func (r *serverRun) commit(cp fl.Checkpoint, rep fl.RoundReport) error {
	if r.st == nil {
		return nil
	}
	state, err := json.Marshal(checkpointState{Sampler: cp.Sampler, Strategy: cp.Strategy})
	if err != nil {
		return err
	}
	metrics, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	return r.st.CommitRound(r.id, cp.Round, cp.Model, metrics, cp.Privacy, state)
}

// discardUnstarted removes the run this process recorded if no round of it was committed (the
// server was stopped by a signal, or failed, before its first round), so that the store keeps
// no empty run; a resumed run, and any run with a committed round, stays.
func (r *serverRun) discardUnstarted(stderr io.Writer) {
	if r.st == nil || !r.created {
		return
	}
	deleted, err := r.st.DeleteRunWithoutRounds(r.id)
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "warning: run %d has no round but stays in the store: %v\n", r.id, err)
	case deleted:
		fmt.Fprintf(stderr, "no round was completed: run %d removed from the store %s\n", r.id, r.st.Path())
	}
}

func (r *serverRun) close() {
	if r.st != nil {
		r.st.Close()
	}
}
