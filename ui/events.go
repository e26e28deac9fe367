package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"shoal/report"
)

// minPush is the least time between two pushes to one page: rounds faster than this are
// coalesced, so that a page costs the run (and the browser) at most one render a second.
const minPush = time.Second

// liveRows is how many rounds the table of a live page lists.
const liveRows = 20

// events is the Server-Sent Events stream of a run: for every new round an event "round"
// (its JSON, the id being the round), then an event "update" whose data is the HTML of the
// page's live part (?view=clients for the clients page), and "end" once the run is over.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	src, ok := h.run(w, r)
	if !ok {
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	id, view := r.PathValue("id"), "overview-live"
	if r.URL.Query().Get("view") == "clients" {
		view = "clients-live"
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	last := -1
	var tick <-chan time.Time
	for {
		changed := src.Changed() // before the snapshot: a change in between is not missed
		run := h.snapshot(id)
		if run.Deployment && tick == nil && h.Refresh > 0 {
			t := time.NewTicker(h.Refresh)
			defer t.Stop()
			tick = t.C
		}
		for _, x := range run.History {
			if x.Round > last {
				b, _ := json.Marshal(x)
				fmt.Fprintf(w, "id: %d\nevent: round\ndata: %s\n\n", x.Round, b)
				last = x.Round
			}
		}
		var frag bytes.Buffer
		if err := h.tmpl.ExecuteTemplate(&frag, view, page{Run: run, Charts: runCharts(run), Live: !final(run)}); err != nil {
			fmt.Fprintf(w, "event: error\ndata: %s\n\n", strings.ReplaceAll(err.Error(), "\n", " "))
			flusher.Flush()
			return
		}
		writeEvent(w, "update", frag.String())
		if final(run) || changed == nil {
			fmt.Fprintf(w, "event: end\ndata: %s\n\n", run.State)
			flusher.Flush()
			return
		}
		flusher.Flush()
		pause := time.NewTimer(minPush)
		select {
		case <-pause.C:
		case <-r.Context().Done():
			pause.Stop()
			return
		}
		select {
		case <-changed:
		case <-tick:
		case <-r.Context().Done():
			return
		}
	}
}

// writeEvent writes a multi-line data field.
func writeEvent(w http.ResponseWriter, event, data string) {
	var b strings.Builder
	fmt.Fprintf(&b, "event: %s\n", event)
	for _, line := range strings.Split(data, "\n") {
		b.WriteString("data: ")
		b.WriteString(strings.TrimRight(line, "\r"))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	_, _ = w.Write([]byte(b.String()))
}

// funcs are the templates' formatting helpers.
var funcs = template.FuncMap{
	"f4":  func(v float64) string { return fmt.Sprintf("%.4f", v) },
	"f3":  func(v float64) string { return fmt.Sprintf("%.3f", v) },
	"pct": func(v float64) string { return fmt.Sprintf("%.2f%%", 100*v) },
	"dur": duration,
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return duration(time.Since(t).Seconds()) + " ago"
	},
	"in":    func(s string, list []string) bool { return slices.Contains(list, s) },
	"clock": func(t time.Time) string { return t.UTC().Format("15:04:05") },
	"short": func(s string) string {
		if len(s) > 12 {
			return s[:12] + "…"
		}
		return s
	},
	"when":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"bytes": report.ByteSize,
	"last": func(h []Round) *Round {
		if len(h) == 0 {
			return nil
		}
		return &h[len(h)-1]
	},
	// rows are the rounds of the table, newest first: while the run is live only the last
	// liveRows (each update re-renders the table in the browser).
	"rows": func(h []Round, live bool) []Round {
		if live && len(h) > liveRows {
			h = h[len(h)-liveRows:]
		}
		out := make([]Round, len(h))
		for i := range h {
			out[len(h)-1-i] = h[i]
		}
		return out
	},
	"liveRows": func() int { return liveRows },
	"progress": func(r Run) int {
		if r.Rounds == 0 {
			return 0
		}
		return int(math.Round(100 * float64(r.Round) / float64(r.Rounds)))
	},
	"connected": func(cs []Client) int {
		n := 0
		for _, c := range cs {
			if c.Connected {
				n++
			}
		}
		return n
	},
	"stages": func(x Round) string {
		var parts []string
		for _, s := range x.Stages {
			parts = append(parts, fmt.Sprintf("%s %.3fs", s.Stage, s.Seconds))
		}
		return strings.Join(parts, ", ")
	},
}

func duration(s float64) string {
	switch {
	case s < 0 || math.IsNaN(s):
		return "—"
	case s < 10:
		return fmt.Sprintf("%.1fs", s)
	case s < 3600:
		return time.Duration(s * float64(time.Second)).Round(time.Second).String()
	}
	return time.Duration(s * float64(time.Second)).Round(time.Minute).String()
}
