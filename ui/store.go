package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"shoal/fl"
	"shoal/store"
	"shoal/store/backend"
)

// OpenStore reads every run of a server's run store, an SQLite file or a postgres:// URL
// (read-only, without its lock: a server may be writing to it; the dashboard shows the rounds
// committed when it opened).
func OpenStore(ctx context.Context, spec string) ([]Source, error) {
	st, err := backend.Open(ctx, spec, backend.ReadOnly, nil)
	if err != nil {
		return nil, fmt.Errorf("run store: %w", err)
	}
	defer st.Close()
	path := st.Path() // without a password
	latest, _, err := st.LatestRun()
	if errors.Is(err, store.ErrNoRun) {
		return nil, fmt.Errorf("run store %s holds no run", path)
	}
	if err != nil {
		return nil, fmt.Errorf("run store: %w", err)
	}
	var out []Source
	for id := int64(1); id <= latest; id++ {
		cfg, err := st.RunConfig(id)
		if errors.Is(err, store.ErrNoRun) {
			continue // deleted: it never started
		}
		if err != nil {
			return nil, fmt.Errorf("run store: %w", err)
		}
		rows, err := st.History(id)
		if err != nil {
			return nil, fmt.Errorf("run store: %w", err)
		}
		r, err := storeRun(id, cfg, rows)
		if err != nil {
			return nil, fmt.Errorf("run store %s: %w", path, err)
		}
		out = append(out, &Dir{run: r})
	}
	return out, nil
}

// storeRun is a stored run: its configuration (the server's options as JSON) and history.
func storeRun(id int64, cfg []byte, rows [][]byte) (Run, error) {
	name := fmt.Sprintf("store-run-%d", id)
	r := Run{ID: name, Name: name, Kind: "run store",
		Protection: []string{"not recorded in the run store: the run directory's summary.json states it"}}
	var opts map[string]any
	if err := json.Unmarshal(cfg, &opts); err != nil {
		return r, fmt.Errorf("run %d: configuration: %w", id, err)
	}
	for k, v := range opts {
		b, _ := json.Marshal(v)
		r.Config = append(r.Config, ConfigEntry{Key: k, Value: strings.Trim(string(b), `"`)})
	}
	slices.SortFunc(r.Config, func(a, b ConfigEntry) int { return strings.Compare(a.Key, b.Key) })
	num := func(k string) float64 { v, _ := opts[k].(float64); return v }
	dp, _ := opts["DP"].(string)
	r.Rounds, r.DP = int(num("Rounds")), dp != "" && dp != "off"
	if r.DP {
		r.MaxEpsilon, r.Delta = num("MaxEpsilon"), num("Delta")
	}
	for i, row := range rows {
		var rep fl.RoundReport
		if err := json.Unmarshal(row, &rep); err != nil {
			return r, fmt.Errorf("run %d, round %d: %w", id, i+1, err)
		}
		x := roundOf(rep)
		r.History = append(r.History, x)
		r.Round = rep.Round
		r.ElapsedSeconds += rep.Seconds
	}
	r.State, r.Status = StateDone, fmt.Sprintf("%d of %d rounds committed", r.Round, r.Rounds)
	if r.Round < r.Rounds {
		r.State = StateStopped
		r.StopReason = "fewer rounds committed than configured: stopped early, or still running (reopen to see later rounds)"
	}
	return r, nil
}
