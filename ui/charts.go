package ui

import (
	"fmt"
	"html/template"
	"slices"
)

// series extracts one value per round.
func series(name string, h []Round, f func(Round) float64) Series {
	s := Series{Name: name}
	for _, r := range h {
		s.X, s.Y = append(s.X, float64(r.Round)), append(s.Y, f(r))
	}
	return s
}

func pct(v float64) string { return fmt.Sprintf("%.0f%%", 100*v) }

// runCharts are the charts of one run, in page order; a chart without data in this run (ε
// without DP, bytes in a simulation) is left out.
func runCharts(r Run) []template.HTML {
	h := r.History
	out := []template.HTML{
		Chart{ID: "chart-accuracy", Title: "Test accuracy", YLabel: "accuracy", Format: pct,
			Series: []Series{series("test accuracy", h, func(x Round) float64 { return x.Accuracy })}}.SVG(),
		Chart{ID: "chart-loss", Title: "Loss", YLabel: "cross-entropy", Series: []Series{
			series("test loss", h, func(x Round) float64 { return x.Loss }),
			series("train loss", h, func(x Round) float64 { return x.TrainLoss })}}.SVG(),
	}
	if r.DP {
		c := Chart{ID: "chart-epsilon", Title: fmt.Sprintf("Privacy spent (δ = %g)", r.Delta), YLabel: "ε", YFrom0: true,
			Series: []Series{series("ε spent", h, func(x Round) float64 { return x.Epsilon })}}
		if r.MaxEpsilon > 0 {
			c.Limit, c.LimitLabel = r.MaxEpsilon, fmt.Sprintf("--max-epsilon %g", r.MaxEpsilon)
		}
		out = append(out, c.SVG())
	}
	if len(h) > 0 && slices.ContainsFunc(h, func(x Round) bool { return x.ClipNorm != h[0].ClipNorm }) { // adaptive clipping
		out = append(out, Chart{ID: "chart-clip", Title: "Clip norm S", YLabel: "L2 norm", YFrom0: true,
			Series: []Series{series("clip norm", h, func(x Round) float64 { return x.ClipNorm })}}.SVG())
	}
	out = append(out, Chart{ID: "chart-clients", Title: "Clients per round", YLabel: "clients", YFrom0: true, Series: []Series{
		series("participants", h, func(x Round) float64 { return float64(x.Participants) }),
		series("dropped", h, func(x Round) float64 { return float64(x.Dropped) }),
		series("stragglers", h, func(x Round) float64 { return float64(x.Stragglers) }),
	}}.SVG())
	if st := stageChart(h); st != nil {
		out = append(out, st.SVG())
	} else {
		out = append(out, Chart{ID: "chart-time", Title: "Round time", YLabel: "seconds", YFrom0: true,
			Series: []Series{series("seconds", h, func(x Round) float64 { return x.Seconds })}}.SVG())
	}
	if r.BytesMeasured {
		var most uint64
		for _, x := range h {
			most = max(most, x.BytesIn, x.BytesOut)
		}
		unit, div := "KiB", float64(1<<10)
		if most >= 1<<30 {
			unit, div = "GiB", 1<<30
		} else if most >= 1<<20 {
			unit, div = "MiB", 1<<20
		}
		scaled := func(v uint64) float64 { return float64(v) / div }
		out = append(out, Chart{ID: "chart-bytes", Title: "Bytes on the wire per round", YLabel: unit, YFrom0: true, Series: []Series{
			series("up (from clients)", h, func(x Round) float64 { return scaled(x.BytesIn) }),
			series("down (to clients)", h, func(x Round) float64 { return scaled(x.BytesOut) }),
		}}.SVG())
	}
	return out
}

// stageChart is the round time split by stage, or nil when no round reports its stages.
func stageChart(h []Round) *StackChart {
	c := &StackChart{ID: "chart-stages", Title: "Round time by stage", YLabel: "seconds"}
	index := map[string]int{}
	for _, r := range h {
		for _, s := range r.Stages {
			if _, ok := index[s.Stage]; !ok {
				index[s.Stage] = len(c.Parts)
				c.Parts = append(c.Parts, s.Stage)
			}
		}
	}
	if len(c.Parts) == 0 {
		return nil
	}
	for _, r := range h {
		vs := make([]float64, len(c.Parts))
		for _, s := range r.Stages {
			vs[index[s.Stage]] += s.Seconds
		}
		c.Rounds, c.Values = append(c.Rounds, r.Round), append(c.Values, vs)
	}
	return c
}

// compareCharts overlay the runs' curves.
func compareCharts(runs []Run) []template.HTML {
	overlay := func(id, title, ylabel string, f func(Round) float64, only func(Run) bool) template.HTML {
		c := Chart{ID: id, Title: title, YLabel: ylabel}
		for i, r := range runs {
			if only == nil || only(r) {
				s := series(r.Name, r.History, f)
				s.Color = &i
				c.Series = append(c.Series, s)
			}
		}
		if id == "cmp-accuracy" {
			c.Format = pct
		}
		return c.SVG()
	}
	out := []template.HTML{
		overlay("cmp-accuracy", "Test accuracy", "accuracy", func(x Round) float64 { return x.Accuracy }, nil),
		overlay("cmp-loss", "Test loss", "cross-entropy", func(x Round) float64 { return x.Loss }, nil),
	}
	if slices.ContainsFunc(runs, func(r Run) bool { return r.DP }) {
		out = append(out, overlay("cmp-epsilon", "Privacy spent ε", "ε", func(x Round) float64 { return x.Epsilon }, func(r Run) bool { return r.DP }))
	}
	out = append(out,
		overlay("cmp-participants", "Participants per round", "clients", func(x Round) float64 { return float64(x.Participants) }, nil),
		overlay("cmp-seconds", "Round time", "seconds", func(x Round) float64 { return x.Seconds }, nil))
	return out
}
