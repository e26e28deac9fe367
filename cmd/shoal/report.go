package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/BurntSushi/toml"

	"shoal/fl"
	"shoal/report"
	"shoal/store/backend"
)

// simSummary is the --json contract of shoal simulate (and of shoal server).
type simSummary struct {
	RoundsRun      int      `json:"rounds_run"`
	RoundsToTarget *int     `json:"rounds_to_target"`
	FinalAccuracy  float64  `json:"final_accuracy"`
	FinalLoss      float64  `json:"final_loss"`
	Seconds        float64  `json:"seconds"`
	Epsilon        *float64 `json:"epsilon,omitempty"` // (ε, δ) spent by the run, under DP
	Delta          *float64 `json:"delta,omitempty"`
	// Protection states what protects the clients' updates in this run: the secure-sum
	// protocol and the DP mechanism with their parameters and threat models.
	Protection []string       `json:"protection"`
	Seed       uint64         `json:"seed"`
	RunDir     string         `json:"run_dir"`
	History    []historyEntry `json:"history"`
}

type historyEntry struct {
	Round        int     `json:"round"`
	Accuracy     float64 `json:"accuracy"`
	Loss         float64 `json:"loss"`
	Participants int     `json:"participants"`
	Dropped      int     `json:"dropped"`
	Seconds      float64 `json:"seconds"`
	Epsilon      float64 `json:"epsilon,omitempty"`
	Delta        float64 `json:"delta,omitempty"`
	ClipNorm     float64 `json:"clip_norm,omitempty"`
	// Stragglers and Stages (the round's time by stage) feed the dashboard of shoal ui.
	Stragglers int            `json:"stragglers,omitempty"`
	Stages     []fl.StageTime `json:"stages,omitempty"`
}

func summarize(history []fl.RoundReport, o simOptions, engine *fl.Engine, seconds float64) simSummary {
	s := simSummary{RoundsRun: len(history), Seconds: seconds, Seed: o.Seed, RunDir: o.Out, History: []historyEntry{},
		Protection: protection(engine, o)}
	for _, r := range history {
		s.History = append(s.History, historyEntry{Round: r.Round, Accuracy: r.Accuracy, Loss: r.Loss,
			Participants: r.Participants, Dropped: r.Dropped, Seconds: r.Seconds, Epsilon: r.Epsilon, Delta: r.Delta, ClipNorm: r.ClipNorm,
			Stragglers: r.Stragglers, Stages: r.Stages})
		if s.RoundsToTarget == nil && o.TargetAccuracy > 0 && r.Accuracy >= o.TargetAccuracy {
			round := r.Round
			s.RoundsToTarget = &round
		}
	}
	if n := len(history); n > 0 {
		s.FinalAccuracy, s.FinalLoss = history[n-1].Accuracy, history[n-1].Loss
		if last := history[n-1]; last.Delta > 0 {
			s.Epsilon, s.Delta = &last.Epsilon, &last.Delta
		}
	}
	return s
}

// writeRunDir writes the run directory of a run that did at least one round: config.toml,
// metrics.csv, metrics.png, model.bin and summary.json.
func writeRunDir(o simOptions, withEpsilon bool, params []float32, history []fl.RoundReport, summary simSummary) error {
	cfg, err := configTOML(o)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.Out, "config.toml"), cfg, 0o644); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	rows := make([][]string, len(history))
	acc := report.Series{Title: "test accuracy", YLabel: "accuracy"}
	loss := report.Series{Title: "test loss", YLabel: "cross-entropy"}
	eps := report.Series{Title: fmt.Sprintf("privacy spent (δ = %g)", o.Delta), YLabel: "ε"}
	for i, r := range history {
		rows[i] = []string{strconv.Itoa(r.Round), report.F(r.Accuracy), report.F(r.Loss), report.F(r.TrainLoss),
			strconv.Itoa(r.Participants), strconv.Itoa(r.Sampled), strconv.Itoa(r.Dropped), report.F(r.Seconds),
			report.F(r.Epsilon), report.F(r.Delta), report.F(r.ClipNorm)}
		acc.Points = append(acc.Points, report.Point{Round: r.Round, Value: r.Accuracy})
		loss.Points = append(loss.Points, report.Point{Round: r.Round, Value: r.Loss})
		eps.Points = append(eps.Points, report.Point{Round: r.Round, Value: r.Epsilon})
	}
	if err := report.WriteCSV(o.Out, "metrics.csv",
		[]string{"round", "accuracy", "loss", "train_loss", "participants", "sampled", "dropped", "seconds", "epsilon", "delta", "clip_norm"}, rows); err != nil {
		return err
	}
	series := []report.Series{acc, loss}
	if withEpsilon {
		series = append(series, eps)
	}
	if err := report.WritePlot(o.Out, "metrics.png", fmt.Sprintf("%s %s", o.Model, o.Dataset), series); err != nil {
		return err
	}
	if err := writeModelFiles(o, params, summary); err != nil {
		return err
	}
	return report.WriteJSON(o.Out, "summary.json", summary)
}

// printRound is the progress line of one round on stderr.
func printRound(w io.Writer, r fl.RoundReport, rounds int) {
	line := fmt.Sprintf("round %3d/%d  accuracy %.4f  loss %.4f  clients %d/%d  %.2fs",
		r.Round, rounds, r.Accuracy, r.Loss, r.Participants, r.Sampled, r.Seconds)
	if r.Delta > 0 {
		line += fmt.Sprintf("  ε %.3f", r.Epsilon)
	}
	if r.FedAccuracy > 0 {
		line += fmt.Sprintf("  fed-accuracy %.4f", r.FedAccuracy)
	}
	if r.Abandoned != "" {
		line += "  (abandoned: " + r.Abandoned + ")"
	}
	fmt.Fprintln(w, line)
}

// printPrivacySpent is the run's last line under DP.
func printPrivacySpent(w io.Writer, s simSummary, e *fl.Engine) {
	if s.Epsilon != nil {
		fmt.Fprintf(w, "privacy spent: (ε = %.4g, δ = %g) — %s\n", *s.Epsilon, *s.Delta, e.Privacy.Describe())
	}
}

// runDir is the run directory a command claims before its run starts. Shoal never writes into
// a directory that already holds files (--resume excepted: the run it continues wrote them).
type runDir struct {
	path    string
	created bool // made by this run: removed again if the run never started
}

// claimRunDir claims *out, or when it is empty a new runs/<cmd>-<UTC time>[-n] (never one that
// exists), and sets *out to the path claimed.
func claimRunDir(out *string, cmd string, resume bool) (*runDir, error) {
	if *out == "" {
		base := filepath.Join("runs", cmd+"-"+time.Now().UTC().Format("20060102-150405"))
		if err := os.MkdirAll("runs", 0o755); err != nil {
			return nil, fmt.Errorf("run directory: %w", err)
		}
		for n := 1; ; n++ {
			path := base
			if n > 1 {
				path = fmt.Sprintf("%s-%d", base, n)
			}
			err := os.Mkdir(path, 0o755)
			if err == nil {
				*out = path
				return &runDir{path: path, created: true}, nil
			}
			if !errors.Is(err, fs.ErrExist) {
				return nil, fmt.Errorf("run directory: %w", err)
			}
		}
	}
	entries, err := os.ReadDir(*out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return nil, fmt.Errorf("--out: %w", err)
		}
		return &runDir{path: *out, created: true}, nil
	case err != nil:
		return nil, fmt.Errorf("--out: %w", err)
	case len(entries) > 0 && !resume:
		return nil, usageErrorf("--out %s already holds files (%s, …): Shoal never overwrites a run; "+
			"choose a new directory, or leave --out out for a fresh runs/<command>-<time>", *out, entries[0].Name())
	}
	return &runDir{path: *out}, nil
}

// release removes the directory again if this run created it and wrote nothing into it.
func (d *runDir) release() {
	if d == nil || !d.created {
		return
	}
	if entries, err := os.ReadDir(d.path); err == nil && len(entries) == 0 {
		_ = os.Remove(d.path)
	}
}

// configNotReplayed are flags that are not part of a run's configuration: where this
// invocation put its output, and the --resume of a deployment.
var configNotReplayed = []string{"config", "out", "json", "log-level", "cpuprofile", "resume", "ui", "ui-certs"}

// configTOML is the run's configuration in the keys --config reads (the flag names), every flag
// with the value the run used, so that `--config DIR/config.toml` reproduces the run. The seed
// is the one the run used, unless it was drawn for a DP run (a seed would then make the noise
// and cohorts reproducible, and the server refuses it).
func configTOML(o simOptions) ([]byte, error) {
	values := map[string]any{}
	o.flags.VisitAll(func(f *flag.Flag) {
		g, ok := f.Value.(flag.Getter)
		if !ok || hidden(o.flags, f.Name) || slices.Contains(configNotReplayed, f.Name) ||
			f.Name == "seed" && !o.seedGiven && o.dpOn() {
			return
		}
		switch v := g.Get().(type) {
		case uint64:
			if v > math.MaxInt64 { // TOML integers are 64-bit signed; the flag parses the string
				values[f.Name] = strconv.FormatUint(v, 10)
			} else {
				values[f.Name] = int64(v)
			}
		case time.Duration:
			values[f.Name] = v.String()
		case string:
			if f.Name == "store" { // the run directory and the dashboard show no database password
				v = backend.Redact(v)
			}
			values[f.Name] = v
		default:
			values[f.Name] = v
		}
	})
	for name, v := range o.StrategyParams { // declared hyper-parameters: only those given
		values[name] = v
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# The configuration of this run, in the flag names --config reads. To run it again:\n"+
		"#   shoal %s --config %s --out NEW-DIR\n\n", o.command, filepath.Join(o.Out, "config.toml"))
	if err := toml.NewEncoder(&b).Encode(values); err != nil {
		return nil, fmt.Errorf("config.toml: %w", err)
	}
	return b.Bytes(), nil
}
