package ui

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"shoal/fl"
	"shoal/transport/grpctransport"
)

// Source is one run the dashboard shows.
type Source interface {
	// Snapshot is the run as it is now (a copy the caller may keep).
	Snapshot() Run
	// Changed returns a channel closed at the run's next change; nil for a run that never
	// changes (a finished run directory).
	Changed() <-chan struct{}
}

// Run states.
const (
	StateWaiting = "waiting" // before round 1: waiting for clients, or the secure-sum setup
	StateRunning = "running"
	StateStopped = "stopped" // ended before its configured rounds: a target, the budget, an error, a signal
	StateDone    = "done"    // ran all its configured rounds
)

// Run is what the dashboard knows of a run: the JSON of /api/runs/{id} (without History and
// Clients, which have endpoints of their own).
type Run struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Kind   string `json:"kind"` // "live simulate", "live server", "run directory"
	State  string `json:"state"`
	Status string `json:"status"` // the state in words: "round 3 of 20", "waiting for 3 clients (1 connected)"
	Round  int    `json:"round"`  // the last completed round
	Rounds int    `json:"rounds"` // configured rounds (--rounds)
	// StopReason says why a stopped run ended early.
	StopReason     string    `json:"stop_reason,omitempty"`
	Started        time.Time `json:"started,omitzero"`
	ElapsedSeconds float64   `json:"elapsed_seconds"`
	// ETASeconds is the time the remaining configured rounds take at the mean pace so far
	// (an upper bound when a target accuracy or the privacy budget may stop the run sooner).
	ETASeconds float64       `json:"eta_seconds,omitempty"`
	Protection []string      `json:"protection"`
	Config     []ConfigEntry `json:"config"`
	DP         bool          `json:"dp"`
	MaxEpsilon float64       `json:"max_epsilon,omitempty"`
	Delta      float64       `json:"delta,omitempty"`
	// Deployment says whether the run has networked clients (the clients page).
	Deployment bool `json:"deployment"`
	// ClientsNote says where the clients are when the run's process holds none (a tier
	// coordinator's devices are on the edges).
	ClientsNote string `json:"clients_note,omitempty"`
	// BytesMeasured says whether the rounds carry bytes on the wire (deployments only: a
	// simulation sends nothing over a network).
	BytesMeasured bool      `json:"bytes_measured"`
	History       []Round   `json:"history,omitempty"`
	Clients       []Client  `json:"clients,omitempty"`
	Updated       time.Time `json:"updated"`
}

// ConfigEntry is one flag of the run's configuration.
type ConfigEntry struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Round is one round's series point: the JSON of /api/runs/{id}/rounds.
type Round struct {
	Round        int            `json:"round"`
	Accuracy     float64        `json:"accuracy"`
	Loss         float64        `json:"loss"`
	TrainLoss    float64        `json:"train_loss"`
	Participants int            `json:"participants"`
	Sampled      int            `json:"sampled"`
	Dropped      int            `json:"dropped"`
	Stragglers   int            `json:"stragglers"`
	Epsilon      float64        `json:"epsilon,omitempty"`
	Delta        float64        `json:"delta,omitempty"`
	ClipNorm     float64        `json:"clip_norm,omitempty"`
	Seconds      float64        `json:"seconds"`
	Stages       []fl.StageTime `json:"stages,omitempty"`
	BytesIn      uint64         `json:"bytes_in,omitempty"`  // received from clients (up), on the wire
	BytesOut     uint64         `json:"bytes_out,omitempty"` // sent to clients (down), on the wire
	Abandoned    string         `json:"abandoned,omitempty"`
}

// roundOf converts an engine report.
func roundOf(r fl.RoundReport) Round {
	return Round{Round: r.Round, Accuracy: r.Accuracy, Loss: r.Loss, TrainLoss: r.TrainLoss, Participants: r.Participants,
		Sampled: r.Sampled, Dropped: r.Dropped, Stragglers: r.Stragglers, Epsilon: r.Epsilon, Delta: r.Delta,
		ClipNorm: r.ClipNorm, Seconds: r.Seconds, Stages: slices.Clone(r.Stages), Abandoned: r.Abandoned}
}

// Client is what the clients page shows of one client of a deployment: the JSON of
// /api/runs/{id}/clients. It is the transport's own status, which holds nothing from a
// client's results (see docs/ui.md), so that no copy can add a field the transport withholds.
type Client = grpctransport.ClientStatus

// ParseConfig reads a run's config.toml (the flag names and values the run used) into
// sorted entries, and the settings the dashboard draws with: rounds, DP, δ and --max-epsilon.
func ParseConfig(b []byte) (entries []ConfigEntry, settings map[string]any, err error) {
	settings = map[string]any{}
	if _, err := toml.Decode(string(b), &settings); err != nil {
		return nil, nil, fmt.Errorf("config.toml: %w", err)
	}
	for k, v := range settings {
		entries = append(entries, ConfigEntry{Key: k, Value: fmt.Sprint(v)})
	}
	slices.SortFunc(entries, func(a, b ConfigEntry) int { return strings.Compare(a.Key, b.Key) })
	return entries, settings, nil
}

// applySettings sets the run's plan from its configuration.
func (r *Run) applySettings(s map[string]any) {
	num := func(k string) float64 {
		switch v := s[k].(type) {
		case int64:
			return float64(v)
		case float64:
			return v
		}
		return 0
	}
	if n := int(num("rounds")); n > 0 {
		r.Rounds = n
	}
	dp, _ := s["dp"].(string)
	r.DP = dp != "" && dp != "off"
	if r.DP {
		r.MaxEpsilon, r.Delta = num("max-epsilon"), num("delta")
	}
}

// finishTimes fills in the elapsed time and the estimate of the time left.
func (r *Run) finishTimes(now time.Time) {
	if !r.Started.IsZero() && r.State != StateDone && r.State != StateStopped {
		r.ElapsedSeconds = now.Sub(r.Started).Seconds()
	}
	r.ETASeconds = 0
	if r.State == StateRunning && r.Round > 0 && r.Rounds > r.Round {
		var sum float64
		for _, h := range r.History {
			sum += h.Seconds
		}
		r.ETASeconds = sum / float64(len(r.History)) * float64(r.Rounds-r.Round)
	}
}
