package ui

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"shoal/fl"
	"shoal/internal/testsupport"
	"shoal/transport/grpctransport"
)

// failingClient fails every task with a message of its choosing.
type failingClient struct{ msg string }

func (c failingClient) Fit(context.Context, fl.FitIns) (fl.FitRes, error) {
	return fl.FitRes{}, errors.New(c.msg)
}

func (c failingClient) Evaluate(context.Context, []float32) (fl.EvalRes, error) {
	return fl.EvalRes{}, errors.New(c.msg)
}

// Malicious clients fail their tasks with markup, one in 900 kB (under the message limit),
// one in 10 MB: over real gRPC sessions, what reaches the clients page, its JSON and its
// event stream is escaped and bounded.
func TestAttackClientFailureMessageOnTheDashboard(t *testing.T) {
	const script = `<script>alert("owned")</script>`
	s, err := grpctransport.NewServer(grpctransport.ServerConfig{RunID: "attack", Authenticate: grpctransport.InsecureAuthenticator(),
		Heartbeat: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	nw := testsupport.NewNetwork()
	lis := nw.Listen(t, "shoal")
	testsupport.Serve(t, lis, func(l net.Listener) error { return s.Serve(l) }, func() { s.Close(false, "test over", time.Second) })
	for name, size := range map[string]int{"mallory": 900 << 10, "bulk": 10 << 20} {
		msg := script + strings.Repeat("A", size)
		testsupport.Go(t, func(ctx context.Context) error {
			return grpctransport.RunClient(ctx, grpctransport.ClientConfig{Server: testsupport.Target("shoal"), Name: name, Insecure: true,
				Local: testsupport.Fixed(failingClient{msg}), MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
				DialOptions: nw.DialOptions()})
		})
	}
	testsupport.WaitClients(t, s, 2)
	e := testsupport.Engine(t, s, 1)
	e.Config.RoundTimeout = 30 * time.Second
	if rep, err := e.RunRound(context.Background(), 1, make([]float32, 8)); err == nil && rep.Participants != 0 {
		t.Fatalf("a round whose clients failed: %+v", rep)
	}
	cs := s.Clients()
	byName := map[string]Client{}
	for _, c := range cs {
		byName[c.Name] = c
	}
	if c := byName["mallory"]; c.Failures != 1 || !strings.Contains(c.LastFailure, "<script>") {
		t.Fatalf("the failure did not reach the client status: %+v", c)
	}
	if c := byName["bulk"]; c.Failures < 1 {
		t.Fatalf("the 10 MB failure was not counted: %+v", c)
	}

	live, err := NewLive(LiveInfo{ID: "run", Name: "run", Kind: "live server", Rounds: 3, Config: []byte("rounds = 3\n"), Clients: s.Clients})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(live)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	defer ts.Close()
	get := func(path string, limit int) string {
		t.Helper()
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if strings.HasPrefix(path, "/api/runs/run/events") { // the first update of the stream
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			var b strings.Builder
			for sc.Scan() && !strings.HasPrefix(sc.Text(), "event: update") {
			}
			for sc.Scan() && sc.Text() != "" {
				b.WriteString(sc.Text())
			}
			if err := sc.Err(); err != nil {
				t.Fatalf("%s: %v (an event over 1 MB?)", path, err)
			}
			return b.String()
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > limit {
			t.Fatalf("%s is over %d bytes", path, limit)
		}
		return string(b)
	}
	for _, path := range []string{"/runs/run/clients", "/api/runs/run/events?view=clients"} {
		page := get(path, 64<<10)
		if strings.Contains(page, "<script>alert") {
			t.Fatalf("%s carries the client's markup unescaped", path)
		}
		if !strings.Contains(page, "&lt;script&gt;alert") {
			t.Fatalf("%s does not show the failure (escaped)", path)
		}
		if len(page) > 64<<10 {
			t.Fatalf("%s: %d bytes", path, len(page))
		}
	}
	body := get("/api/runs/run/clients", 64<<10)
	if strings.Contains(body, "<script>") {
		t.Fatal("the clients JSON carries raw markup")
	}
	var api struct{ Clients []Client }
	if err := json.Unmarshal([]byte(body), &api); err != nil || len(api.Clients) != 2 || !strings.Contains(body, `\u003cscript\u003ealert`) {
		t.Fatalf("clients JSON: %v %+v", err, api)
	}
	// Nothing of a client's results (which DP or a secure sum hide) has a field.
	var raw struct{ Clients []map[string]any }
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	for _, c := range raw.Clients {
		for k := range c {
			for _, hidden := range []string{"loss", "accuracy", "example", "update", "norm", "bytes", "weight"} {
				if strings.Contains(k, hidden) {
					t.Fatalf("the clients JSON has a field %q", k)
				}
			}
		}
	}
}

// Run ids and static paths that climb out of the served runs read nothing: a run is looked up
// by its id among those given at start, never opened by a path from the request.
func TestAttackPathTraversal(t *testing.T) {
	root := t.TempDir()
	run := filepath.Join(root, "runs", "a")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(run, "summary.json"), []byte(`{"rounds_run":1,"history":[{"round":1,"accuracy":0.5}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	const secret = "SECRET-OUTSIDE-THE-RUNS"
	if err := os.WriteFile(filepath.Join(root, "summary.json"), []byte(`{"rounds_run":7,"final_accuracy":0.99,"x":"`+secret+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDir(run)
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(d)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	defer ts.Close()
	for _, p := range []string{"/api/runs/..%2F..", "/api/runs/..%2F..%2Fsummary.json", "/runs/..%2f..", "/api/runs/%2e%2e",
		"/compare?run=../..", "/static/..%2f..%2fsummary.json", "/static/../../summary.json", "/api/runs/" + url.PathEscape(root)} {
		resp, err := http.Get(ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), secret) || strings.Contains(string(b), `"rounds": 7`) || resp.StatusCode == http.StatusOK && !strings.HasPrefix(p, "/static/../") {
			t.Fatalf("%s: %s %.200s", p, resp.Status, b)
		}
	}
}

// Whoever can name a run directory (or a stage, or a run's --out) writes markup into the run's
// name: the pages, the SVG charts (built outside html/template) and the JSON escape it.
func TestAttackRunNameMarkup(t *testing.T) {
	const markup = `<img src=x onerror=alert(1)>`
	var sources []Source
	for _, name := range []string{markup, "plain"} {
		dir := filepath.Join(t.TempDir(), name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		summary := `{"rounds_run":2,"history":[{"round":1,"accuracy":0.5,"epsilon":1,"stages":[{"stage":"` + markup + `","seconds":1}]},` +
			`{"round":2,"accuracy":0.6,"epsilon":2,"stages":[{"stage":"` + markup + `","seconds":1}]}]}`
		if err := os.WriteFile(filepath.Join(dir, "summary.json"), []byte(summary), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte("rounds = 2\ndp = \"central\"\nmax-epsilon = 3.0\nnote = \""+markup+"\"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		d, err := OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, d)
	}
	h, err := New(sources...)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	defer ts.Close()
	id := h.ids[0]
	for _, p := range []string{"/", "/compare", "/runs/" + url.PathEscape(id), "/runs/" + url.PathEscape(id) + "/clients", "/api/runs",
		"/api/runs/" + url.PathEscape(id), "/api/runs/" + url.PathEscape(id) + "/rounds", "/api/runs/" + url.PathEscape(id) + "/events"} {
		resp, err := http.Get(ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s", p, resp.Status)
		}
		if strings.Contains(string(b), "<img") {
			t.Fatalf("%s carries the markup unescaped", p)
		}
	}
}
