package ui

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"shoal/fl"
)

// summaryFile is the part of a run directory's summary.json the dashboard reads (the --json
// contract of shoal simulate and shoal server).
type summaryFile struct {
	RoundsRun      int      `json:"rounds_run"`
	RoundsToTarget *int     `json:"rounds_to_target"`
	FinalAccuracy  float64  `json:"final_accuracy"`
	Seconds        float64  `json:"seconds"`
	Protection     []string `json:"protection"`
	History        []struct {
		Round        int            `json:"round"`
		Accuracy     float64        `json:"accuracy"`
		Loss         float64        `json:"loss"`
		Participants int            `json:"participants"`
		Dropped      int            `json:"dropped"`
		Stragglers   int            `json:"stragglers"`
		Seconds      float64        `json:"seconds"`
		Epsilon      float64        `json:"epsilon"`
		Delta        float64        `json:"delta"`
		ClipNorm     float64        `json:"clip_norm"`
		Stages       []fl.StageTime `json:"stages"`
	} `json:"history"`
}

// Dir is a finished run directory.
type Dir struct{ run Run }

var _ Source = (*Dir)(nil)

// OpenDir reads the run directory path: summary.json (required), config.toml and
// metrics.csv (for the sampled clients and the training loss) when present.
func OpenDir(path string) (*Dir, error) {
	b, err := os.ReadFile(filepath.Join(path, "summary.json"))
	if err != nil {
		return nil, fmt.Errorf("run directory %s: %w (a run directory holds the summary.json shoal simulate or server wrote)", path, err)
	}
	var s summaryFile
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("run directory %s: summary.json: %w", path, err)
	}
	name := filepath.Base(filepath.Clean(path))
	r := Run{ID: name, Name: name, Kind: "run directory", Protection: s.Protection, Round: s.RoundsRun, Rounds: s.RoundsRun,
		ElapsedSeconds: s.Seconds}
	if info, err := os.Stat(filepath.Join(path, "summary.json")); err == nil {
		r.Updated = info.ModTime()
	}
	cfg, err := os.ReadFile(filepath.Join(path, "config.toml"))
	switch {
	case err == nil:
		entries, settings, err := ParseConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("run directory %s: %w", path, err)
		}
		r.Config = entries
		r.applySettings(settings)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("run directory %s: %w", path, err)
	}
	for _, h := range s.History {
		r.History = append(r.History, Round{Round: h.Round, Accuracy: h.Accuracy, Loss: h.Loss, Participants: h.Participants,
			Dropped: h.Dropped, Stragglers: h.Stragglers, Seconds: h.Seconds, Epsilon: h.Epsilon, Delta: h.Delta,
			ClipNorm: h.ClipNorm, Stages: h.Stages, Sampled: h.Participants + h.Dropped})
	}
	if err := readMetricsCSV(filepath.Join(path, "metrics.csv"), r.History); err != nil {
		return nil, fmt.Errorf("run directory %s: %w", path, err)
	}
	r.State, r.Status = StateDone, fmt.Sprintf("finished: %d of %d rounds", r.Round, r.Rounds)
	if r.Round < r.Rounds {
		r.State, r.Status = StateStopped, fmt.Sprintf("stopped after round %d of %d", r.Round, r.Rounds)
		r.StopReason = "stopped early (a target accuracy, the privacy budget, or a signal)"
		if s.RoundsToTarget != nil {
			r.StopReason = fmt.Sprintf("reached the target accuracy in round %d", *s.RoundsToTarget)
		}
	}
	return &Dir{run: r}, nil
}

// readMetricsCSV fills in the columns summary.json lacks (sampled, train_loss) by round.
func readMetricsCSV(path string, history []Round) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil || len(rows) == 0 {
		return fmt.Errorf("metrics.csv: %v", err)
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	byRound := map[int]*Round{}
	for i := range history {
		byRound[history[i].Round] = &history[i]
	}
	for _, row := range rows[1:] {
		get := func(name string) (float64, bool) {
			i, ok := col[name]
			if !ok || i >= len(row) {
				return 0, false
			}
			v, err := strconv.ParseFloat(row[i], 64)
			return v, err == nil
		}
		n, _ := get("round")
		h := byRound[int(n)]
		if h == nil {
			continue
		}
		if v, ok := get("sampled"); ok {
			h.Sampled = int(v)
		}
		if v, ok := get("train_loss"); ok {
			h.TrainLoss = v
		}
	}
	return nil
}

// Snapshot implements Source.
func (d *Dir) Snapshot() Run { return d.run }

// Changed implements Source: a finished run never changes.
func (d *Dir) Changed() <-chan struct{} { return nil }
