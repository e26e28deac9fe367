package ui

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"shoal/fl"
)

// LiveInfo describes a live run before its first round.
type LiveInfo struct {
	ID, Name string
	Kind     string // "live simulate" or "live server"
	Rounds   int
	// Config is the run's config.toml (as the run directory will hold it).
	Config     []byte
	Protection []string
	// Clients, if set, lists a deployment's clients (called when a page or the API asks).
	Clients func() []Client
	// Wire, if set, returns the bytes received from and sent to clients so far; each round
	// then carries its share.
	Wire func() (in, out uint64)
	// ClientsNote, if set, says where the run's clients are when this process holds none (a
	// tier coordinator: devices connect to the edges); the clients page shows it.
	ClientsNote string
}

// Live is a run in progress, fed by the engine's hooks (Waiting, Round, Finish): a hook only
// records and wakes the pages waiting for news, it never waits for a browser.
type Live struct {
	mu      sync.Mutex
	run     Run
	changed chan struct{}
	clients func() []Client
	wire    func() (in, out uint64)
	in, out uint64
}

var _ Source = (*Live)(nil)

// NewLive is a live run in the waiting state.
func NewLive(info LiveInfo) (*Live, error) {
	entries, settings, err := ParseConfig(info.Config)
	if err != nil {
		return nil, err
	}
	id := info.ID
	if id == "" {
		id = "live"
	}
	l := &Live{changed: make(chan struct{}), clients: info.Clients, wire: info.Wire}
	l.run = Run{ID: id, Name: info.Name, Kind: info.Kind, State: StateWaiting, Status: "starting", Rounds: info.Rounds,
		Started: time.Now(), Protection: slices.Clone(info.Protection), Config: entries,
		Deployment: info.Clients != nil, BytesMeasured: info.Wire != nil, ClientsNote: info.ClientsNote}
	l.run.applySettings(settings)
	if info.Rounds > 0 {
		l.run.Rounds = info.Rounds
	}
	if l.wire != nil {
		l.in, l.out = l.wire()
	}
	return l, nil
}

// update changes the run under the lock and wakes the waiting pages.
func (l *Live) update(f func(r *Run)) {
	l.mu.Lock()
	f(&l.run)
	l.run.Updated = time.Now()
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

// Status says what the run is doing now (waiting for clients, the secure-sum setup, a round).
func (l *Live) Status(status string) {
	l.update(func(r *Run) {
		if r.State == StateWaiting || r.State == StateRunning {
			r.Status = status
		}
	})
}

// Running says a round is under way (from the first round on, the run is running).
func (l *Live) Running(status string) {
	l.update(func(r *Run) {
		if r.State == StateWaiting || r.State == StateRunning {
			r.State, r.Status = StateRunning, status
		}
	})
}

// Round records a completed round (the engine's OnRound).
func (l *Live) Round(rep fl.RoundReport) {
	x := roundOf(rep)
	if l.wire != nil {
		in, out := l.wire()
		x.BytesIn, x.BytesOut = in-l.in, out-l.out
		l.in, l.out = in, out
	}
	l.update(func(r *Run) {
		r.History = append(r.History, x)
		r.Round, r.State = rep.Round, StateRunning
		r.Status = fmt.Sprintf("round %d of %d done", rep.Round, r.Rounds)
	})
}

// Resumed records the rounds an earlier process of the run completed.
func (l *Live) Resumed(history []fl.RoundReport) {
	l.update(func(r *Run) {
		for _, h := range history {
			r.History = append(r.History, roundOf(h))
			r.Round = h.Round
		}
	})
}

// Finish records the end of the run: reason says why it stopped early ("" if it ran all its
// rounds), err is the run's error (nil on success).
func (l *Live) Finish(reason string, err error) {
	l.update(func(r *Run) {
		r.ElapsedSeconds = time.Since(r.Started).Seconds()
		switch {
		case err != nil:
			r.State, r.StopReason = StateStopped, err.Error()
		case reason != "":
			r.State, r.StopReason = StateStopped, reason
		case r.Round < r.Rounds:
			r.State, r.StopReason = StateStopped, fmt.Sprintf("stopped after round %d", r.Round)
		default:
			r.State = StateDone
		}
		r.Status = fmt.Sprintf("finished: %d of %d rounds", r.Round, r.Rounds)
		if r.State == StateStopped {
			r.Status = fmt.Sprintf("stopped after round %d of %d", r.Round, r.Rounds)
		}
	})
}

// Snapshot implements Source.
func (l *Live) Snapshot() Run {
	l.mu.Lock()
	r := l.run
	r.History = slices.Clone(l.run.History)
	r.Protection = slices.Clone(l.run.Protection)
	l.mu.Unlock()
	if l.clients != nil {
		r.Clients = l.clients()
	}
	r.finishTimes(time.Now())
	return r
}

// Changed implements Source.
func (l *Live) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// final reports whether the run has ended.
func final(r Run) bool { return r.State == StateDone || r.State == StateStopped }
