package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"shoal/pki"
)

// chromiumPath is Debian's chromium, which .ci/run installs: the browser tests never skip.
const chromiumPath = "/usr/bin/chromium"

var updateScreenshots = flag.Bool("update", false, "TestScreenshots: write the screenshots of docs/ui.md")

// testDataset is the tests' data: synthetic (fast, also under -race), MNIST for the
// screenshots of docs/ui.md.
func testDataset() string {
	if *updateScreenshots {
		return "mnist"
	}
	return "synthetic"
}

// newBrowser starts a headless Chromium with a fresh profile and returns its tab's context.
func newBrowser(t *testing.T, width, height int) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the dashboard's browser tests need Debian's chromium (%v): apt-get install -y chromium (.ci/run does)", err)
	}
	profile, err := os.MkdirTemp("", "shoal-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromiumPath), chromedp.NoSandbox, chromedp.Headless,
		chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile), chromedp.WindowSize(width, height))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() {
		cancelTime()
		cancelTab()
		cancelAlloc()
		os.RemoveAll(profile)
	})
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank"), chromedp.EmulateViewport(int64(width), int64(height))); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// js evaluates expr in the page.
func js[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS waits until expr is truthy in the page.
func waitJS(t *testing.T, ctx context.Context, expr string, timeout time.Duration) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(timeout))); err != nil {
		t.Fatalf("waiting for %s: %v", expr, err)
	}
}

func navigate(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
}

// dashboardURL waits for the command's "dashboard…: URL" line.
func dashboardURL(t *testing.T, p *proc) string {
	t.Helper()
	line := p.waitFor("dashboard", 60*time.Second)
	i := strings.Index(line, "http")
	if i < 0 {
		t.Fatalf("no URL in %q", line)
	}
	return strings.Fields(line[i:])[0]
}

func readSummary(t *testing.T, dir string) simSummary {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	return decodeSummary(t, b)
}

// liveArgs is a small DP simulation whose rounds each take about half a second (every client
// straggles 400 ms), so that a browser sees them arrive.
func liveArgs(out string, rounds int) []string {
	return []string{"simulate", "--dataset", testDataset(), "--model", "logreg", "--clients", "10", "--fraction", "0.5",
		"--sampling", "poisson", "--dp", "central", "--noise-multiplier", "1", "--clip", "1", "--max-epsilon", "30",
		"--rounds", fmt.Sprint(rounds), "--target-accuracy", "0", "--seed", "5", "--lr", "0.05",
		"--straggler-fraction", "1", "--straggler-delay", "400ms", "--ui", "127.0.0.1:0", "--out", out}
}

// The dashboard of a running simulate: a browser opened during the run sees rounds arrive
// without a reload (Server-Sent Events), and once the run is over every number on the page is
// the one summary.json holds.
func TestDashboardLiveSimulate(t *testing.T) {
	ctx := newBrowser(t, 1280, 800)
	out := filepath.Join(t.TempDir(), "live")
	const rounds = 8
	sim := startInProcess(t, "simulate", func(ctx context.Context, stdout, stderr io.Writer) error {
		return runSimulate(ctx, liveArgs(out, rounds)[1:], stdout, stderr)
	})
	url := dashboardURL(t, sim)
	navigate(t, ctx, url)
	waitJS(t, ctx, `document.querySelector('#round') !== null`, 10*time.Second)
	js[bool](t, ctx, `window.notReloaded = true`)
	first := js[int](t, ctx, `+document.querySelector('#round').textContent`)
	if first >= rounds {
		t.Fatalf("the page opened after the run ended (round %d of %d): nothing left to see live", first, rounds)
	}
	// A later round shows up in the same document.
	waitJS(t, ctx, fmt.Sprintf(`+document.querySelector('#round').textContent > %d && window.notReloaded === true`, max(first, 2)), 30*time.Second)
	screenshot(t, ctx, "overview-live", false)
	if got := js[int](t, ctx, `document.querySelectorAll('#rounds tbody tr').length`); got <= first {
		t.Fatalf("rounds table has %d rows after a live update from round %d", got, first)
	}
	waitJS(t, ctx, `document.body.dataset.ended === "true" && window.notReloaded === true`, 60*time.Second)
	if err := sim.wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	s := readSummary(t, out)
	checkPageAgainstSummary(t, ctx, s)
	if got := js[string](t, ctx, `document.querySelector('#state').textContent`); got != "done" {
		t.Fatalf("state %q after the run, want done", got)
	}
	if got := js[int](t, ctx, `document.querySelectorAll('#chart-epsilon .limit').length`); got != 1 {
		t.Fatalf("the ε chart draws %d --max-epsilon rules, want 1", got)
	}
	screenshot(t, ctx, "overview-full", true)
}

// checkPageAgainstSummary compares the overview's numbers with a run's summary.json.
func checkPageAgainstSummary(t *testing.T, ctx context.Context, s simSummary) {
	t.Helper()
	if got := js[int](t, ctx, `+document.querySelector('#round').textContent`); got != s.RoundsRun {
		t.Fatalf("page says round %d, summary.json %d rounds", got, s.RoundsRun)
	}
	if got := js[string](t, ctx, `document.querySelector('#accuracy').textContent`); got != fmt.Sprintf("%.4f", s.FinalAccuracy) {
		t.Fatalf("page accuracy %s, summary.json %.4f", got, s.FinalAccuracy)
	}
	if got := js[string](t, ctx, `document.querySelector('#loss').textContent`); got != fmt.Sprintf("%.4f", s.FinalLoss) {
		t.Fatalf("page loss %s, summary.json %.4f", got, s.FinalLoss)
	}
	if s.Epsilon != nil {
		if got := js[string](t, ctx, `document.querySelector('#epsilon').textContent`); got != fmt.Sprintf("%.3f", *s.Epsilon) {
			t.Fatalf("page ε %s, summary.json %.3f", got, *s.Epsilon)
		}
	}
	type row struct{ Round, Accuracy, Loss, Participants, Epsilon string }
	rows := js[[]row](t, ctx, `[...document.querySelectorAll('#rounds tbody tr')].map(r => ({Round: r.dataset.round,
		Accuracy: r.querySelector('.accuracy').textContent, Loss: r.querySelector('.loss').textContent,
		Participants: r.querySelector('.participants').textContent.split('/')[0],
		Epsilon: (r.querySelector('.epsilon') || {}).textContent || ''}))`)
	if len(rows) != len(s.History) {
		t.Fatalf("page shows %d rounds, summary.json %d", len(rows), len(s.History))
	}
	byRound := map[string]row{}
	for _, r := range rows {
		byRound[r.Round] = r
	}
	for _, h := range s.History {
		r, ok := byRound[fmt.Sprint(h.Round)]
		want := row{fmt.Sprint(h.Round), fmt.Sprintf("%.4f", h.Accuracy), fmt.Sprintf("%.4f", h.Loss), fmt.Sprint(h.Participants), ""}
		if s.Epsilon != nil {
			want.Epsilon = fmt.Sprintf("%.3f", h.Epsilon)
		}
		if !ok || r != want {
			t.Fatalf("round %d on the page %+v, in summary.json %+v", h.Round, r, want)
		}
	}
}

// finishedRuns runs two small simulations, with and without DP, and returns their directories.
func finishedRuns(t *testing.T) (plain, dp string) {
	t.Helper()
	base := t.TempDir()
	plain, dp = filepath.Join(base, "plain"), filepath.Join(base, "central-dp")
	common := []string{"simulate", "--dataset", testDataset(), "--model", "logreg", "--clients", "100", "--fraction", "0.2",
		"--rounds", "5", "--target-accuracy", "0", "--seed", "9", "--lr", "0.05"}
	if code, _, stderr := shoal(t, append(common, "--out", plain)...); code != 0 {
		t.Fatalf("simulate: %s", stderr)
	}
	if code, _, stderr := shoal(t, append(common, "--out", dp, "--sampling", "poisson", "--dp", "central",
		"--noise-multiplier", "1", "--clip", "1", "--adaptive-clip", "0.5", "--max-epsilon", "40")...); code != 0 {
		t.Fatalf("simulate --dp central: %s", stderr)
	}
	return plain, dp
}

// shoal ui serves finished run directories: the overview shows summary.json's numbers, the
// compare view overlays both runs and marks the settings that differ, and /api/ serves the
// same data as JSON.
func TestDashboardFinishedRunsAndCompare(t *testing.T) {
	plain, dp := finishedRuns(t)
	ui := startInProcess(t, "ui", func(ctx context.Context, stdout, stderr io.Writer) error {
		return runUI(ctx, []string{"--listen", "127.0.0.1:0", plain, dp}, stdout, stderr)
	})
	url := strings.TrimSuffix(dashboardURL(t, ui), "/")
	ctx := newBrowser(t, 1280, 800)

	navigate(t, ctx, url+"/")
	if got := js[int](t, ctx, `document.querySelectorAll('#runs tbody tr').length`); got != 2 {
		t.Fatalf("index lists %d runs, want 2", got)
	}
	navigate(t, ctx, url+"/runs/central-dp")
	waitJS(t, ctx, `document.body.dataset.ended === "true" || !document.querySelector('#page').dataset.events`, 10*time.Second)
	checkPageAgainstSummary(t, ctx, readSummary(t, dp))
	if got := js[int](t, ctx, `document.querySelectorAll('#chart-clip polyline').length`); got != 1 {
		t.Fatalf("adaptive clipping run: %d clip-norm lines, want 1", got)
	}
	if got := js[string](t, ctx, `document.querySelector('#protection').textContent`); !strings.Contains(got, "DP-FedAvg") {
		t.Fatalf("protection statement %q", got)
	}

	screenshot(t, ctx, "overview-finished", false)
	if *updateScreenshots {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2))); err != nil {
			t.Fatal(err)
		}
		navigate(t, ctx, url+"/runs/central-dp")
		screenshot(t, ctx, "overview-phone", false)
		navigate(t, ctx, url+"/compare?run=plain&run=central-dp")
		screenshot(t, ctx, "compare-phone", false)
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
			t.Fatal(err)
		}
	}
	navigate(t, ctx, url+"/")
	screenshot(t, ctx, "index", false)
	navigate(t, ctx, url+"/compare?run=plain&run=central-dp")
	for name, dir := range map[string]string{"plain": plain, "central-dp": dp} {
		s := readSummary(t, dir)
		got := js[string](t, ctx, fmt.Sprintf(`document.querySelector('#compare-summary tr[data-run="%s"] .accuracy').textContent`, name))
		if got != fmt.Sprintf("%.4f", s.FinalAccuracy) {
			t.Fatalf("compare view: %s accuracy %s, summary.json %.4f", name, got, s.FinalAccuracy)
		}
	}
	if got := js[int](t, ctx, `document.querySelectorAll('#cmp-accuracy polyline').length`); got != 2 {
		t.Fatalf("compare accuracy chart overlays %d curves, want 2", got)
	}
	differ := js[[]string](t, ctx, `[...document.querySelectorAll('#compare-config tr.differ th')].map(th => th.textContent)`)
	screenshot(t, ctx, "compare", true)
	if !strings.Contains(strings.Join(differ, ","), "dp") || strings.Contains(","+strings.Join(differ, ",")+",", ",model,") {
		t.Fatalf("settings marked as differing: %v (want dp, not model)", differ)
	}

	resp, err := http.Get(url + "/api/runs/central-dp/rounds")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var api struct {
		Rounds []struct {
			Round    int     `json:"round"`
			Accuracy float64 `json:"accuracy"`
			Epsilon  float64 `json:"epsilon"`
		} `json:"rounds"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&api); err != nil {
		t.Fatal(err)
	}
	s := readSummary(t, dp)
	if len(api.Rounds) != len(s.History) || api.Rounds[len(api.Rounds)-1].Epsilon != s.History[len(s.History)-1].Epsilon {
		t.Fatalf("/api rounds %+v, summary.json %+v", api.Rounds, s.History)
	}
	if resp, err := http.Post(url+"/api/runs", "application/json", strings.NewReader("{}")); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST to the read-only dashboard: %v %v", resp, err)
	}
}

// A dashboard on a non-loopback address without operator certificates refuses to start.
func TestDashboardRefusesOpenAddress(t *testing.T) {
	plain := t.TempDir()
	code, _, stderr := shoal(t, "ui", "--listen", "0.0.0.0:0", plain)
	if code != 2 || !strings.Contains(stderr, "summary.json") {
		t.Fatalf("ui on an empty directory: exit %d, %s", code, stderr)
	}
	code, _, stderr = shoal(t, "simulate", "--dataset", "synthetic", "--model", "logreg", "--rounds", "1", "--clients", "2", "--ui", "0.0.0.0:0", "--out", filepath.Join(plain, "x"))
	if code != 2 || !strings.Contains(stderr, "operator") {
		t.Fatalf("simulate --ui 0.0.0.0:0 without --ui-certs: exit %d, %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(plain, "x", "summary.json")); err == nil {
		t.Fatal("the run went ahead without its dashboard")
	}
}

// screenshot writes docs/ui/NAME.png (the page as the viewport shows it, or the whole page)
// when the tests run with -update.
func screenshot(t *testing.T, ctx context.Context, name string, full bool) {
	t.Helper()
	if !*updateScreenshots {
		return
	}
	var png []byte
	var err error
	if full {
		png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	} else {
		png, err = chromedp.Run(ctx, chromedp.CaptureScreenshot())
	}
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join("..", "..", "docs", "ui")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// inProcess runs a shoal command line in this process.
func inProcess(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return startInProcess(t, name, func(ctx context.Context, stdout, stderr io.Writer) error {
		if code := run(ctx, args, stdout, stderr); code != 0 {
			return fmt.Errorf("%s: exit %d", name, code)
		}
		return nil
	})
}

// The clients page of a deployment over mutual TLS: each client's certificate identity,
// session and rounds joined, a client that left with the reason — and no column of what a
// client sent.
func TestDashboardDeploymentClients(t *testing.T) {
	const clients = 3
	names := clientNames(clients)
	certs := certsFor(t, names...)
	addr := freeAddr(t)
	common := trainingArgs(clients, "--fraction", "1", "--rounds", "400", "--local-epochs", "300", "--lr", "0.01", "--target-accuracy", "0")
	srv := inProcess(t, "server", append([]string{"server", "--listen", addr, "--certs", certs, "--out", filepath.Join(t.TempDir(), "deployment"),
		"--wait-clients", fmt.Sprint(clients), "--min-clients", "2", "--fit-timeout", "60s", "--heartbeat", "1s", "--ui", "127.0.0.1:0"}, common...)...)
	url := strings.TrimSuffix(dashboardURL(t, srv), "/")
	procs := map[string]*proc{}
	for i, name := range names {
		procs[name] = inProcess(t, name, append([]string{"client", "--server", addr, "--name", name, "--certs", certs,
			"--partition-index", fmt.Sprint(i), "--max-backoff", "300ms"}, trainingArgs(clients)...)...)
	}
	srv.waitFor("round   2/", 60*time.Second)
	ctx := newBrowser(t, 1280, 800)
	navigate(t, ctx, url+"/runs/deployment/clients")
	waitJS(t, ctx, `document.querySelectorAll('#clients tbody tr.on').length === 3 &&
		[...document.querySelectorAll('#clients .joined')].every(td => parseInt(td.textContent) >= 1)`, 30*time.Second)
	serials := js[[]string](t, ctx, `[...document.querySelectorAll('#clients .serial')].map(td => td.title)`)
	for i, name := range names {
		want, err := pki.ClientSerial(certs, name)
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(serials) || !strings.HasPrefix(serials[i], "serial "+want+",") {
			t.Fatalf("client %s: certificate %q on the page, serial %s issued", name, serials, want)
		}
	}
	head := strings.ToLower(js[string](t, ctx, `document.querySelector('#clients thead').textContent`))
	for _, hidden := range []string{"loss", "accuracy", "examples", "norm", "update"} {
		if strings.Contains(head, hidden) {
			t.Fatalf("clients table has a %q column: %s", hidden, head)
		}
	}
	procs["c2"].kill() // the client leaves; the live page says so
	waitJS(t, ctx, `(() => { const r = document.querySelector('#clients tr[data-client="c2"]');
		return r && r.classList.contains('off') && r.querySelector('.why').textContent.includes('disconnected') })()`, 30*time.Second)
	screenshot(t, ctx, "clients", false)
	navigate(t, ctx, url+"/runs/deployment")
	waitJS(t, ctx, `document.querySelectorAll('#chart-bytes polyline').length === 2`, 30*time.Second)
	screenshot(t, ctx, "overview-deployment", true)
}
