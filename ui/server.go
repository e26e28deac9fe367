package ui

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"regexp"
	"slices"
	"time"
)

//go:embed assets
var assets embed.FS

// Handler serves the dashboard of a set of runs (see the package documentation for its pages
// and endpoints).
type Handler struct {
	ids     []string
	sources map[string]Source
	tmpl    *template.Template
	mux     *http.ServeMux
	// Refresh is how often the live page of a deployment refreshes its clients without a
	// round (default 2 s).
	Refresh time.Duration
}

var idUnsafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// New serves sources; each gets an id from its own (made URL-safe and unique).
func New(sources ...Source) (*Handler, error) {
	t, err := template.New("").Funcs(funcs).ParseFS(assets, "assets/templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard templates: %w", err)
	}
	h := &Handler{sources: map[string]Source{}, tmpl: t, mux: http.NewServeMux(), Refresh: 2 * time.Second}
	for _, s := range sources {
		id := idUnsafe.ReplaceAllString(s.Snapshot().ID, "-")
		if id == "" {
			id = "run"
		}
		for base, n := id, 2; h.sources[id] != nil; n++ {
			id = fmt.Sprintf("%s-%d", base, n)
		}
		h.ids = append(h.ids, id)
		h.sources[id] = s
	}
	static, _ := fs.Sub(assets, "assets/static")
	h.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	h.mux.HandleFunc("GET /{$}", h.index)
	h.mux.HandleFunc("GET /runs/{id}", h.overview)
	h.mux.HandleFunc("GET /runs/{id}/clients", h.clients)
	h.mux.HandleFunc("GET /compare", h.compare)
	h.mux.HandleFunc("GET /api/runs", h.apiRuns)
	h.mux.HandleFunc("GET /api/runs/{id}", h.apiRun)
	h.mux.HandleFunc("GET /api/runs/{id}/rounds", h.apiRounds)
	h.mux.HandleFunc("GET /api/runs/{id}/clients", h.apiClients)
	h.mux.HandleFunc("GET /api/runs/{id}/events", h.events)
	return h, nil
}

// ServeHTTP serves GET and HEAD only: the dashboard is read-only.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the dashboard is read-only", http.StatusMethodNotAllowed)
		return
	}
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	h.mux.ServeHTTP(w, r)
}

// run finds the source of the request's {id} (writing a 404 if there is none).
func (h *Handler) run(w http.ResponseWriter, r *http.Request) (Source, bool) {
	s, ok := h.sources[r.PathValue("id")]
	if !ok {
		http.Error(w, fmt.Sprintf("no run %q (the runs are listed at /api/runs)", r.PathValue("id")), http.StatusNotFound)
	}
	return s, ok
}

func (h *Handler) snapshots() []Run {
	out := make([]Run, len(h.ids))
	for i, id := range h.ids {
		out[i] = h.sources[id].Snapshot()
		out[i].ID = id
	}
	return out
}

func (h *Handler) snapshot(id string) Run {
	r := h.sources[id].Snapshot()
	r.ID = id
	return r
}

func (h *Handler) render(w http.ResponseWriter, name string, data any) {
	var b bytes.Buffer
	if err := h.tmpl.ExecuteTemplate(&b, name, data); err != nil {
		http.Error(w, "render "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(b.Bytes())
}

func (h *Handler) index(w http.ResponseWriter, r *http.Request) {
	runs := h.snapshots()
	if len(runs) == 1 {
		http.Redirect(w, r, "/runs/"+runs[0].ID, http.StatusFound)
		return
	}
	h.render(w, "index.html", map[string]any{"Runs": runs})
}

// page is the data of the overview and clients pages.
type page struct {
	Run    Run
	Charts []template.HTML
	Live   bool // the page subscribes to /events
}

func (h *Handler) overview(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.run(w, r); ok {
		run := h.snapshot(r.PathValue("id"))
		h.render(w, "overview.html", page{Run: run, Charts: runCharts(run), Live: !final(run)})
	}
}

func (h *Handler) clients(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.run(w, r); ok {
		run := h.snapshot(r.PathValue("id"))
		h.render(w, "clients.html", page{Run: run, Live: !final(run)})
	}
}

func (h *Handler) compare(w http.ResponseWriter, r *http.Request) {
	want := r.URL.Query()["run"]
	all := h.snapshots()
	var runs []Run
	for _, run := range all {
		if len(want) == 0 || slices.Contains(want, run.ID) {
			runs = append(runs, run)
		}
	}
	for _, id := range want {
		if h.sources[id] == nil {
			http.Error(w, fmt.Sprintf("no run %q", id), http.StatusNotFound)
			return
		}
	}
	h.render(w, "compare.html", map[string]any{"All": all, "Runs": runs, "Charts": compareCharts(runs),
		"Config": configTable(runs), "Selected": want})
}

// configRow is one flag across the compared runs.
type configRow struct {
	Key    string
	Values []string
	Differ bool
}

func configTable(runs []Run) []configRow {
	keys := map[string]bool{}
	var order []string
	for _, r := range runs {
		for _, e := range r.Config {
			if !keys[e.Key] {
				keys[e.Key] = true
				order = append(order, e.Key)
			}
		}
	}
	slices.Sort(order)
	var rows []configRow
	for _, k := range order {
		row := configRow{Key: k}
		for _, r := range runs {
			v := "—"
			for _, e := range r.Config {
				if e.Key == k {
					v = e.Value
				}
			}
			if len(row.Values) > 0 && v != row.Values[0] {
				row.Differ = true
			}
			row.Values = append(row.Values, v)
		}
		rows = append(rows, row)
	}
	return rows
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// runSummary is one entry of /api/runs.
type runSummary struct {
	ID            string  `json:"id"`
	Name          string  `json:"name"`
	Kind          string  `json:"kind"`
	State         string  `json:"state"`
	Status        string  `json:"status"`
	Round         int     `json:"round"`
	Rounds        int     `json:"rounds"`
	FinalAccuracy float64 `json:"final_accuracy"`
	Epsilon       float64 `json:"epsilon,omitempty"`
}

func (h *Handler) apiRuns(w http.ResponseWriter, r *http.Request) {
	out := []runSummary{}
	for _, run := range h.snapshots() {
		s := runSummary{ID: run.ID, Name: run.Name, Kind: run.Kind, State: run.State, Status: run.Status, Round: run.Round, Rounds: run.Rounds}
		if n := len(run.History); n > 0 {
			s.FinalAccuracy, s.Epsilon = run.History[n-1].Accuracy, run.History[n-1].Epsilon
		}
		out = append(out, s)
	}
	writeJSON(w, map[string]any{"runs": out})
}

func (h *Handler) apiRun(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.run(w, r); ok {
		run := h.snapshot(r.PathValue("id"))
		run.History, run.Clients = nil, nil
		writeJSON(w, run)
	}
}

func (h *Handler) apiRounds(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.run(w, r); ok {
		run := h.snapshot(r.PathValue("id"))
		if run.History == nil {
			run.History = []Round{}
		}
		writeJSON(w, map[string]any{"rounds": run.History})
	}
}

func (h *Handler) apiClients(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.run(w, r); ok {
		run := h.snapshot(r.PathValue("id"))
		if run.Clients == nil {
			run.Clients = []Client{}
		}
		writeJSON(w, map[string]any{"deployment": run.Deployment, "clients": run.Clients})
	}
}
