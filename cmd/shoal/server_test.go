package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"shoal/data"
	"shoal/fl"
	"shoal/pki"
	"shoal/store"
	"shoal/store/postgres/pgtest"
	"shoal/trainer"
	"shoal/transport/grpctransport"
)

// The end-to-end tests run the real binary: one server process and client processes on
// loopback, built once.
var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// TestMain removes the binary the end-to-end tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopShared()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func shoalBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: builds the binary and runs server and client processes (skipped with -short)")
	}
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "shoal-e2e-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "shoal")
		// The README's build command: one static binary.
		build := exec.Command("go", "build", "-o", binPath, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := build.CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// proc is a running shoal process whose stderr lines are kept for waiting on.
type proc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdout bytes.Buffer
	mu     sync.Mutex
	lines  []string
	grew   chan struct{}
	done   chan struct{}
	err    error
	kill   func() // SIGKILL for a process, cancellation for an in-process run
}

func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, cmd: exec.Command(shoalBinary(t), args...), grew: make(chan struct{}, 1), done: make(chan struct{})}
	p.cmd.Stdout = &p.stdout
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.kill = func() { _ = p.cmd.Process.Signal(syscall.SIGKILL) }
	go func() {
		p.scan(stderr)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	p.cleanup()
	return p
}

// startInProcess runs fn (a command, in this process) like startProc runs the binary: its
// stderr lines can be waited for, and kill cancels it.
func startInProcess(t *testing.T, name string, fn func(ctx context.Context, stdout, stderr io.Writer) error) *proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &proc{t: t, name: name, grew: make(chan struct{}, 1), done: make(chan struct{}), kill: cancel}
	r, w := io.Pipe()
	scanned := make(chan struct{})
	go func() { p.scan(r); close(scanned) }()
	go func() {
		p.err = fn(ctx, &p.stdout, w)
		w.Close()
		<-scanned
		close(p.done)
	}()
	p.cleanup()
	return p
}

func (p *proc) scan(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		p.mu.Lock()
		p.lines = append(p.lines, sc.Text())
		p.mu.Unlock()
		select {
		case p.grew <- struct{}{}:
		default:
		}
	}
}

func (p *proc) cleanup() {
	p.t.Cleanup(func() {
		p.kill()
		<-p.done
		if p.t.Failed() {
			p.t.Logf("--- %s stderr:\n%s", p.name, p.log())
		}
	})
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// waitFor blocks until a stderr line contains s, and returns it.
func (p *proc) waitFor(s string, timeout time.Duration) string {
	p.t.Helper()
	deadline := time.After(timeout)
	seen := 0
	for {
		p.mu.Lock()
		for ; seen < len(p.lines); seen++ {
			if strings.Contains(p.lines[seen], s) {
				line := p.lines[seen]
				p.mu.Unlock()
				return line
			}
		}
		p.mu.Unlock()
		select {
		case <-p.grew:
		case <-p.done:
			p.mu.Lock()
			n := len(p.lines)
			p.mu.Unlock()
			if n == seen {
				p.t.Fatalf("%s exited (%v) before printing %q", p.name, p.err, s)
			}
		case <-deadline:
			p.t.Fatalf("%s: no %q within %v", p.name, s, timeout)
		}
	}
}

func (p *proc) wait(timeout time.Duration) error {
	p.t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.t.Fatalf("%s still running after %v", p.name, timeout)
		return nil
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// certsFor creates a CA, the server certificate and one certificate per client name.
func certsFor(t *testing.T, names ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if err := pki.InitCA(dir, []string{"127.0.0.1", "localhost"}, false); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := pki.IssueClient(dir, n); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func clientNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("c%d", i)
	}
	return names
}

// federation flags shared by the server, its clients and the reference simulation.
func trainingArgs(clients int, extra ...string) []string {
	return append([]string{"--dataset", "synthetic", "--model", "logreg", "--clients", fmt.Sprint(clients), "--seed", "11"}, extra...)
}

func startClients(t *testing.T, addr, certs string, clients int, extra ...string) map[string]*proc {
	t.Helper()
	procs := map[string]*proc{}
	for i, name := range clientNames(clients) {
		args := []string{"client", "--server", addr, "--name", name, "--partition-index", fmt.Sprint(i), "--max-backoff", "300ms"}
		if certs == "" {
			args = append(args, "--insecure")
		} else {
			args = append(args, "--certs", certs)
		}
		args = append(args, trainingArgs(clients)...)
		procs[name] = startProc(t, name, append(args, extra...)...)
	}
	return procs
}

func decodeSummary(t *testing.T, out []byte) simSummary {
	t.Helper()
	var s simSummary
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatalf("summary: %v\n%s", err, out)
	}
	return s
}

// Ten client processes over mutual TLS train exactly the model the simulator trains with the
// same seed: same partition, same sampling, same local shuffles; only the transport differs.
func TestNetworkRunMatchesSimulator(t *testing.T) {
	const clients = 10
	certs := certsFor(t, clientNames(clients)...)
	addr := freeAddr(t)
	dir := t.TempDir()
	common := trainingArgs(clients, "--fraction", "0.5", "--rounds", "4", "--lr", "0.05", "--target-accuracy", "0", "--json")
	srv := startProc(t, "server", append([]string{"server", "--listen", addr, "--certs", certs, "--out", filepath.Join(dir, "net"),
		"--wait-clients", fmt.Sprint(clients),
		"--fit-timeout", "60s", "--wait-timeout", "60s", "--heartbeat", "1s"}, common...)...)
	procs := startClients(t, addr, certs, clients)
	if err := srv.wait(90 * time.Second); err != nil {
		t.Fatalf("server: %v", err)
	}
	for name, p := range procs {
		if err := p.wait(20 * time.Second); err != nil {
			t.Fatalf("client %s: %v", name, err)
		}
	}
	network := decodeSummary(t, srv.stdout.Bytes())

	var out, errb bytes.Buffer
	if code := run(context.Background(), append([]string{"simulate", "--out", filepath.Join(dir, "sim")}, common...), &out, &errb); code != 0 {
		t.Fatalf("simulate: exit %d: %s", code, errb.String())
	}
	simulated := decodeSummary(t, out.Bytes())
	if network.RoundsRun != 4 || len(network.History) != 4 {
		t.Fatalf("network run: %+v", network)
	}
	for i := range network.History {
		n, s := network.History[i], simulated.History[i]
		if n.Participants != 5 || n.Participants != s.Participants || n.Dropped != 0 ||
			!close64(n.Accuracy, s.Accuracy, 1e-9) || !close64(n.Loss, s.Loss, 1e-6) {
			t.Fatalf("round %d: network %+v, simulator %+v", i+1, n, s)
		}
	}
	netModel, _ := os.ReadFile(filepath.Join(dir, "net", "model.bin"))
	simModel, _ := os.ReadFile(filepath.Join(dir, "sim", "model.bin"))
	// The float64 sums are taken in arrival order; a different order could move a float32
	// result by one ulp only at a rounding boundary (chance ~2⁻²⁹ per coordinate), so the
	// models are expected bit-identical.
	if len(netModel) == 0 || !bytes.Equal(netModel, simModel) {
		t.Fatalf("network model (%d bytes) differs from the simulated one (%d bytes)", len(netModel), len(simModel))
	}
	for _, f := range []string{"config.toml", "metrics.csv", "metrics.png", "model.bin", "summary.json"} {
		if st, err := os.Stat(filepath.Join(dir, "net", f)); err != nil || st.Size() == 0 {
			t.Fatalf("run directory lacks %s: %v", f, err)
		}
	}
}

func close64(a, b, tol float64) bool { return a-b <= tol && b-a <= tol }

// A client killed with SIGKILL while it trains is left out of its round at once, and the round
// and the run finish with the others.
func TestClientKilledMidRound(t *testing.T) {
	const clients = 3
	addr := freeAddr(t)
	dir := t.TempDir()
	// Many local epochs make each fit take long enough to be killed in the middle of it.
	common := trainingArgs(clients, "--fraction", "1", "--rounds", "2", "--local-epochs", "400",
		"--lr", "0.01", "--target-accuracy", "0", "--json")
	srv := startProc(t, "server", append([]string{"server", "--insecure", "--listen", addr, "--out", dir, "--wait-clients", "3",
		"--fit-timeout", "120s", "--heartbeat", "1s"}, common...)...)
	procs := startClients(t, addr, "", clients, "--log-level", "debug")
	procs["c1"].waitFor("kind=fit", 60*time.Second)
	start := time.Now()
	procs["c1"].kill()
	if err := srv.wait(100 * time.Second); err != nil {
		t.Fatalf("server: %v", err)
	}
	s := decodeSummary(t, srv.stdout.Bytes())
	if s.RoundsRun != 2 || s.History[0].Participants != 2 || s.History[0].Dropped != 1 || s.History[1].Participants != 2 {
		t.Fatalf("summary %+v", s)
	}
	if el := time.Since(start); el > 60*time.Second {
		t.Fatalf("run took %v after the kill", el)
	}
}

// The server, killed with SIGKILL after some rounds and restarted with --resume, continues at
// the next round: no round is lost or repeated, the clients reconnect by themselves, and the
// final model is the one an uninterrupted simulation trains.
func TestServerKilledAndResumed(t *testing.T) {
	killAndResume(t, false, "--fraction", "0.5")
}

// The same with stateful server parts: server momentum, adaptive clipping and the privacy
// accountant all continue exactly (same ε, same clip, same model as an uninterrupted run). With
// four clients the count noise (0.05·q·N) only allows a weak noise multiplier: this tests the
// bookkeeping, not a useful ε. A deployment never seeds its DP noise or cohorts (the command
// line refuses --seed with --dp), so to compare with a seeded simulation this test runs the
// server in-process with seeded privacy randomness injected through the Go API, and stops the
// first server by cancelling it rather than with SIGKILL (TestServerKilledAndResumed and the
// store's crash tests cover the kill).
func TestServerKilledAndResumedWithDP(t *testing.T) {
	killAndResume(t, true, "--sampling", "poisson", "--fraction", "0.75", "--strategy", "fedavgm", "--dp", "central",
		"--noise-multiplier", "0.25", "--clip", "0.05", "--adaptive-clip", "0.5")
}

func killAndResume(t *testing.T, inProcess bool, extra ...string) {
	killAndResumeOn(t, "", inProcess, extra...)
}

// killAndResumeOn is killAndResume with the run in storeSpec (empty: an SQLite file); it
// returns the two servers' logs.
func killAndResumeOn(t *testing.T, storeSpec string, inProcess bool, extra ...string) string {
	start := func(name string, args ...string) *proc { return startProc(t, name, args...) }
	if inProcess {
		start = func(name string, args ...string) *proc {
			return startInProcess(t, name, func(ctx context.Context, stdout, stderr io.Writer) error {
				return serve(ctx, args[1:], stdout, stderr, true)
			})
		}
	}
	const clients = 4
	addr := freeAddr(t)
	dir := t.TempDir()
	storePath := filepath.Join(dir, "run.db")
	if storeSpec != "" {
		storePath = storeSpec
	}
	common := trainingArgs(clients, append([]string{"--rounds", "6", "--lr", "0.05", "--target-accuracy", "0", "--json"}, extra...)...)
	first := start("server-1", append([]string{"server", "--insecure", "--listen", addr, "--store", storePath, "--wait-clients", "4",
		"--out", filepath.Join(dir, "net"), "--heartbeat", "1s"}, common...)...)
	procs := startClients(t, addr, "", clients)
	first.waitFor("round   3/6", 60*time.Second)
	first.kill()
	_ = first.wait(10 * time.Second)

	second := start("server-2", "server", "--insecure", "--listen", addr, "--store", storePath, "--resume",
		"--out", filepath.Join(dir, "net"), "--heartbeat", "1s", "--wait-clients", "4", "--json")
	line := second.waitFor("resuming run", 30*time.Second)
	var after int
	if _, err := fmt.Sscanf(line[strings.Index(line, "after round"):], "after round %d", &after); err != nil || after < 3 {
		t.Fatalf("resumed %q", line)
	}
	if err := second.wait(60 * time.Second); err != nil {
		t.Fatalf("resumed server: %v", err)
	}
	for name, p := range procs {
		if err := p.wait(20 * time.Second); err != nil {
			t.Fatalf("client %s: %v", name, err)
		}
	}
	s := decodeSummary(t, second.stdout.Bytes())
	if s.RoundsRun != 6 {
		t.Fatalf("rounds run %d, want 6: %+v", s.RoundsRun, s)
	}
	for i, h := range s.History {
		if h.Round != i+1 {
			t.Fatalf("history rounds %+v: lost or repeated a round", s.History)
		}
	}
	if strings.Contains(second.log(), fmt.Sprintf("round %3d/6", after)) {
		t.Fatalf("round %d run again after resume", after)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), append([]string{"simulate", "--out", filepath.Join(dir, "sim")}, common...), &out, &errb); code != 0 {
		t.Fatalf("simulate: %s", errb.String())
	}
	sim := decodeSummary(t, out.Bytes())
	for i := range sim.History {
		if !close64(sim.History[i].Accuracy, s.History[i].Accuracy, 1e-9) || !close64(sim.History[i].Loss, s.History[i].Loss, 1e-6) ||
			!close64(sim.History[i].Epsilon, s.History[i].Epsilon, 1e-12) || !close64(sim.History[i].ClipNorm, s.History[i].ClipNorm, 1e-9) {
			t.Fatalf("round %d: resumed network run %+v, simulator %+v", i+1, s.History[i], sim.History[i])
		}
	}
	return first.log() + second.log()
}

// Mutual TLS: a client without a certificate, with one from another CA, a revoked one, or
// claiming another client's name is refused, and gives up instead of retrying forever.
func TestServerRefusesUnauthorisedClients(t *testing.T) {
	certs := certsFor(t, "alice", "bob", "mallory")
	other := certsFor(t, "alice")
	if err := pki.Revoke(certs, "mallory"); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	srv := startProc(t, "server", append([]string{"server", "--listen", addr, "--certs", certs, "--out", t.TempDir(),
		"--wait-clients", "1", "--rounds", "1", "--fraction", "1", "--heartbeat", "1s"}, trainingArgs(3)...)...)
	srv.waitFor("waiting for", 30*time.Second)

	local := func(int, fl.ClientID) (fl.Client, error) { return nil, errors.New("never asked") }
	try := func(dir, certName, helloName string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cfg := grpctransport.ClientConfig{Server: addr, Name: helloName, Local: local, MinBackoff: 50 * time.Millisecond}
		if certName == "" { // the right CA, but no client certificate
			pem, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
			if err != nil {
				return err
			}
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(pem)
			cfg.TLS = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
		} else {
			tlsCfg, err := pki.ClientTLSConfig(dir, certName, "127.0.0.1")
			if err != nil {
				return err
			}
			cfg.TLS = tlsCfg
		}
		return grpctransport.RunClient(ctx, cfg)
	}
	for _, tc := range []struct {
		name, dir, cert, hello string
	}{
		{"no certificate", certs, "", "alice"},
		{"another CA", other, "alice", "alice"},
		{"revoked", certs, "mallory", "mallory"},
		{"another client's name", certs, "alice", "bob"},
	} {
		err := try(tc.dir, tc.cert, tc.hello)
		if !errors.Is(err, grpctransport.ErrRefused) {
			t.Errorf("%s: %v, want a refusal", tc.name, err)
		}
		if tc.name == "revoked" && (err == nil || !strings.Contains(err.Error(), "certificate revoked")) {
			t.Errorf("the revoked client is not told it is revoked: %v", err)
		}
	}
	// The server says why it refused each handshake (issue 13, item 9); the client of another
	// CA refuses the server's certificate first.
	for _, reason := range []string{pki.RefusedNoCertificate, pki.RefusedByClient} {
		srv.waitFor("reason="+reason, 30*time.Second)
	}
	if !strings.Contains(srv.log(), "TLS handshake refused") {
		t.Errorf("server log without the handshake refusals:\n%s", srv.log())
	}
	if strings.Contains(srv.log(), "round   1/1") {
		t.Fatal("a round ran with refused clients")
	}
	// The legitimate client is admitted and the run completes.
	c := startProc(t, "alice", append([]string{"client", "--server", addr, "--certs", certs, "--name", "alice",
		"--partition-index", "0"}, trainingArgs(3)...)...)
	if err := srv.wait(60 * time.Second); err != nil {
		t.Fatalf("server: %v", err)
	}
	if err := c.wait(20 * time.Second); err != nil {
		t.Fatalf("alice: %v", err)
	}
}

func TestServerBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--dataset", "synthetic"}, "--certs"},
		{[]string{"--insecure", "--certs", "x"}, "exclude"},
		{[]string{"--insecure", "--resume"}, "--store"},
		{[]string{"--insecure", "--dropout", "0.1"}, "simulates"},
		{[]string{"--insecure", "--dataset", "synthetic", "--seed", "1", "--model", "logreg", "--over-select", "0.5"}, "over-select"},
		// The server's synthetic test set must be the clients' federation: without a seed it
		// would draw its own, and the run would evaluate on unrelated data (accuracy at chance).
		{[]string{"--insecure", "--dataset", "synthetic", "--model", "logreg"}, "--data-seed"},
		{[]string{"--insecure", "--dataset", "synthetic", "--model", "logreg", "--dp", "central", "--sampling", "poisson"}, "--data-seed"},
		{[]string{"--insecure", "--dp", "central", "--sampling", "poisson", "--seed", "3"}, "voids the DP guarantee"},
		{[]string{"--insecure", "--fit-timeout", "0"}, "stalls the run forever"},
		{[]string{"--insecure", "--stage-timeout", "0s"}, "stalls the run forever"},
	} {
		code, _, stderr := shoal(t, append([]string{"server", "--out", t.TempDir()}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want usage error mentioning %q", tc.args, code, stderr, tc.want)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--insecure"}, "--name"},
		{[]string{"--name", "a"}, "--certs"},
		{[]string{"--name", "a", "--insecure", "--dataset", "synthetic"}, "--partition-index"},
		{[]string{"--name", "a", "--insecure", "--dataset", "mnist", "--partition-index", "3", "--clients", "2"}, "--clients"},
		{[]string{"--name", "a", "--insecure", "--dataset", "synthetic", "--partition-index", "0", "--clients", "2"}, "--data-seed"},
		{[]string{"--name", "a", "--insecure", "--require-secure-sum", "rot13"}, "valid: any"},
		{[]string{"--name", "a", "--insecure", "--require-local-noise", "1"}, "--require-clip"},
	} {
		code, _, stderr := shoal(t, append([]string{"client"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("client %v: exit %d, %q; want usage error mentioning %q", tc.args, code, stderr, tc.want)
		}
	}
}

// SecAgg+ over the network with two clients crashing in the middle of round 2's protocol (they
// shared their keys, then died before sending their masked input): the round completes with the
// survivors, and the model follows the plain run in which the same two clients die at the same
// round — the secure sum equals the plain sum of the survivors up to quantisation.
func TestSecureSumSurvivesTwoCrashedClients(t *testing.T) {
	const clients = 6
	common := trainingArgs(clients, "--fraction", "1", "--rounds", "3", "--lr", "0.05", "--target-accuracy", "0", "--json")
	runWith := func(secure bool) simSummary {
		addr := freeAddr(t)
		args := append([]string{"server", "--insecure", "--listen", addr, "--out", t.TempDir(), "--wait-clients", "6",
			"--fit-timeout", "60s", "--stage-timeout", "30s", "--heartbeat", "1s"}, common...)
		exitAt := "2/fit"
		if secure {
			args = append(args, "--secure-sum", "secaggplus", "--max-dropout", "0.34")
			exitAt = "2/2" // stage 2: the masked input
		}
		srv := startProc(t, "server", args...)
		for i, name := range clientNames(clients) {
			cargs := append([]string{"client", "--insecure", "--server", addr, "--name", name, "--partition-index", fmt.Sprint(i),
				"--max-backoff", "300ms"}, trainingArgs(clients)...)
			if i >= 4 {
				cargs = append(cargs, "--fault-exit-at", exitAt)
			}
			startProc(t, name, cargs...)
		}
		if err := srv.wait(90 * time.Second); err != nil {
			t.Fatalf("server (secure %v): %v", secure, err)
		}
		return decodeSummary(t, srv.stdout.Bytes())
	}
	secure, plain := runWith(true), runWith(false)
	if secure.RoundsRun != 3 || secure.History[1].Participants != 4 || secure.History[1].Dropped != 2 || secure.History[2].Participants != 4 {
		t.Fatalf("secure run: %+v", secure.History)
	}
	for i := range plain.History {
		if !close64(secure.History[i].Loss, plain.History[i].Loss, 2e-3) {
			t.Fatalf("round %d: secure loss %v, plain loss %v", i+1, secure.History[i].Loss, plain.History[i].Loss)
		}
	}
}

// The client's local data: one shard per replica, disjoint, matching the simulator's
// partition; a CSV file is local data as a whole, with a held-out part for evaluation.
func TestClientLocalData(t *testing.T) {
	o := clientOptions{PartitionIndex: 2, Replicas: 3, Model: "logreg"}
	o.data = dataOptions{Dataset: "synthetic", Partition: "iid", Clients: 6, Seed: 4, SyntheticAlpha: 1, SyntheticBeta: 1}
	locals, _, err := loadLocal(o)
	if err != nil {
		t.Fatal(err)
	}
	fed, err := data.Synthetic(1, 1, 6, 4)
	if err != nil {
		t.Fatal(err)
	}
	for i, local := range locals {
		c, err := local(1, 0)
		if err != nil {
			t.Fatal(err)
		}
		tc := c.(*trainer.Client)
		x, y := fed.Train.Gather(fed.Clients[2+i], nil, nil)
		if !slices.Equal(tc.Y, y) || !slices.Equal(tc.X, x) || len(tc.TestY) != len(fed.TestClients[2+i]) {
			t.Fatalf("replica %d does not hold shard %d", i, 2+i)
		}
	}
	if _, _, err := loadLocal(clientOptions{PartitionIndex: 5, Replicas: 2, data: o.data, Model: "logreg"}); err == nil {
		t.Fatal("replicas past the last shard accepted")
	}

	csv := filepath.Join(t.TempDir(), "local.csv")
	var b strings.Builder
	b.WriteString("a,b,label\n")
	for i := range 50 {
		fmt.Fprintf(&b, "%d,%d,%s\n", i, 50-i, []string{"x", "y"}[i%2])
	}
	if err := os.WriteFile(csv, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	co := clientOptions{PartitionIndex: -1, Replicas: 1, Model: "logreg"}
	co.data = dataOptions{Dataset: "csv", DataPath: csv, LabelColumn: "label", TestFraction: 0.2}
	locals, _, err = loadLocal(co)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := locals[0](1, 0)
	if tc := c.(*trainer.Client); len(tc.Y) != 40 || len(tc.TestY) != 10 {
		t.Fatalf("csv: %d training and %d test examples, want 40 and 10", len(tc.Y), len(tc.TestY))
	}
}

// Threshold HE over the network: the key ceremony runs as round 0 between client processes,
// the server adds ciphertexts, the committee decrypts the sum; the model follows the
// simulator's round for round.
func TestThresholdHEOverNetwork(t *testing.T) {
	const clients = 5
	common := trainingArgs(clients, "--fraction", "0.6", "--rounds", "2", "--lr", "0.05", "--target-accuracy", "0",
		"--secure-sum", "he", "--he-committee", "3", "--he-threshold", "2", "--json")
	addr := freeAddr(t)
	dir := t.TempDir()
	srv := startProc(t, "server", append([]string{"server", "--insecure", "--listen", addr, "--out", filepath.Join(dir, "net"),
		"--wait-clients", fmt.Sprint(clients), "--heartbeat", "1s"}, common...)...)
	startClients(t, addr, "", clients)
	if err := srv.wait(90 * time.Second); err != nil {
		t.Fatalf("server: %v", err)
	}
	srv.waitFor("secure-sum setup (he) done", time.Second)
	network := decodeSummary(t, srv.stdout.Bytes())
	var out, errb bytes.Buffer
	if code := run(context.Background(), append([]string{"simulate", "--out", filepath.Join(dir, "sim")}, common...), &out, &errb); code != 0 {
		t.Fatalf("simulate: %s", errb.String())
	}
	sim := decodeSummary(t, out.Bytes())
	if network.RoundsRun != 2 {
		t.Fatalf("network run %+v", network)
	}
	for i := range sim.History {
		n, s := network.History[i], sim.History[i]
		if n.Participants != 3 || n.Participants != s.Participants || !close64(n.Accuracy, s.Accuracy, 1e-9) || !close64(n.Loss, s.Loss, 1e-6) {
			t.Fatalf("round %d: network %+v, simulator %+v", i+1, n, s)
		}
	}
}

// Threshold HE survives a server SIGKILL: the resumed server runs a new key ceremony with the
// same clients, and the run still follows the simulator round for round.
func TestThresholdHEResumed(t *testing.T) {
	const clients = 5
	common := trainingArgs(clients, "--fraction", "0.6", "--rounds", "4", "--lr", "0.05", "--target-accuracy", "0",
		"--secure-sum", "he", "--he-committee", "3", "--he-threshold", "2", "--json")
	addr := freeAddr(t)
	dir := t.TempDir()
	storePath := filepath.Join(dir, "run.db")
	first := startProc(t, "server-1", append([]string{"server", "--insecure", "--listen", addr, "--store", storePath,
		"--out", filepath.Join(dir, "net"), "--wait-clients", fmt.Sprint(clients), "--heartbeat", "1s"}, common...)...)
	startClients(t, addr, "", clients)
	first.waitFor("round   2/4", 60*time.Second)
	first.kill()
	_ = first.wait(10 * time.Second)
	second := startProc(t, "server-2", "server", "--insecure", "--listen", addr, "--store", storePath, "--resume",
		"--out", filepath.Join(dir, "net"), "--wait-clients", fmt.Sprint(clients), "--heartbeat", "1s", "--json")
	if err := second.wait(60 * time.Second); err != nil {
		t.Fatalf("resumed server: %v", err)
	}
	second.waitFor("secure-sum setup (he) done", time.Second)
	network := decodeSummary(t, second.stdout.Bytes())
	var out, errb bytes.Buffer
	if code := run(context.Background(), append([]string{"simulate", "--out", filepath.Join(dir, "sim")}, common...), &out, &errb); code != 0 {
		t.Fatalf("simulate: %s", errb.String())
	}
	sim := decodeSummary(t, out.Bytes())
	if network.RoundsRun != 4 {
		t.Fatalf("resumed run %+v", network)
	}
	for i := range sim.History {
		n, s := network.History[i], sim.History[i]
		if n.Round != i+1 || !close64(n.Accuracy, s.Accuracy, 1e-9) || !close64(n.Loss, s.Loss, 1e-6) {
			t.Fatalf("round %d: resumed network %+v, simulator %+v", i+1, n, s)
		}
	}
}

// Attack: with the old defaults (no fit or stage deadline) one client that kept its connection
// alive with heartbeats but never answered stalled the run forever. The server's deadlines are
// now on by default; the transport leaves such a client out when they pass
// (grpctransport.TestDeadlineBoundsTheRound).
func TestAttackSilentClientStallsRunByDefault(t *testing.T) {
	o, _, err := parseServerOptions([]string{"--insecure"}, io.Discard, false)
	if err != nil {
		t.Fatal(err)
	}
	if o.FitTimeout <= 0 || o.StageTimeout <= 0 {
		t.Fatalf("default deadlines: fit %v, stage %v; a silent client would stall the run", o.FitTimeout, o.StageTimeout)
	}
	o, _, err = parseServerOptions([]string{"--insecure", "--round-timeout", "42s"}, io.Discard, false)
	if err != nil || o.FitTimeout != 42*time.Second {
		t.Fatalf("--round-timeout 42s gave fit deadline %v (%v)", o.FitTimeout, err)
	}
}

// SIGTERM is a clean stop, not an error: a server still waiting for clients exits 0 and
// writes nothing, neither a run directory nor a run in its store; a simulation stopped mid-run
// exits 0 and its run directory holds the rounds it did.
func TestSignalIsACleanStop(t *testing.T) {
	dir := t.TempDir()
	serverOut, db := filepath.Join(dir, "server-run"), filepath.Join(dir, "fl.db")
	srv := startProc(t, "server", append([]string{"server", "--insecure", "--listen", freeAddr(t), "--out", serverOut,
		"--store", db, "--wait-clients", "2"}, trainingArgs(2)...)...)
	srv.waitFor("waiting for 2 clients", 60*time.Second)
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := srv.wait(30 * time.Second); err != nil {
		t.Fatalf("server stopped by SIGTERM: %v, want exit 0", err)
	}
	srv.waitFor("stopped by signal after round 0", time.Second)
	if _, err := os.Stat(serverOut); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a run that never started wrote %s (%v)", serverOut, err)
	}
	srv.waitFor("no round was completed: run 1 removed from the store", time.Second)
	st, err := store.OpenExisting(db)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = st.LatestRun()
	st.Close()
	if !errors.Is(err, store.ErrNoRun) {
		t.Fatalf("a server stopped before its first round left a run in the store: %v", err)
	}

	simOut := filepath.Join(dir, "sim-run")
	sim := startProc(t, "simulate", "simulate", "--dataset", "synthetic", "--model", "logreg", "--rounds", "100000",
		"--target-accuracy", "0", "--out", simOut)
	sim.waitFor("round   2/100000", 60*time.Second)
	if err := sim.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := sim.wait(30 * time.Second); err != nil {
		t.Fatalf("simulate stopped by SIGTERM: %v, want exit 0", err)
	}
	line := sim.waitFor("stopped by signal after round", time.Second)
	var r int
	if _, err := fmt.Sscanf(line, "stopped by signal after round %d", &r); err != nil || r < 2 {
		t.Fatalf("%q: %v", line, err)
	}
	csv, err := os.ReadFile(filepath.Join(simOut, "metrics.csv"))
	if err != nil || strings.Count(string(csv), "\n") != r+1 {
		t.Fatalf("metrics.csv of a run stopped after round %d: %v\n%s", r, err, csv)
	}
	for _, f := range []string{"config.toml", "model.bin", "summary.json"} {
		if _, err := os.Stat(filepath.Join(simOut, f)); err != nil {
			t.Fatalf("run directory lacks %s: %v", f, err)
		}
	}
}

// A server that cannot start (its port is taken) leaves no run in the store and no run
// directory; a --store in a missing directory is an error, not a directory created silently.
func TestServerThatCannotStartLeavesNothing(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	db, out := filepath.Join(dir, "fl.db"), filepath.Join(dir, "run")
	code, _, stderr := shoal(t, append([]string{"server", "--insecure", "--listen", busy.Addr().String(), "--store", db,
		"--out", out}, trainingArgs(2)...)...)
	if code != 1 || !strings.Contains(stderr, "--listen") {
		t.Fatalf("busy port: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a server that never started left %s (%v)", out, err)
	}
	st, err := store.OpenExisting(db)
	if err == nil {
		_, _, err = st.LatestRun()
		st.Close()
		if !errors.Is(err, store.ErrNoRun) {
			t.Fatalf("a server that never started left a run in the store: %v", err)
		}
	}
	missing := filepath.Join(dir, "no-such-dir", "fl.db")
	code, _, stderr = shoal(t, append([]string{"server", "--insecure", "--listen", "127.0.0.1:0", "--store", missing,
		"--out", out}, trainingArgs(2)...)...)
	if code != 1 || !strings.Contains(stderr, "--store") {
		t.Fatalf("--store in a missing directory: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Dir(missing)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("--store created its directory: %v", err)
	}
}

// "One static binary": built as the README says (CGO_ENABLED=0), the binary has no dynamic
// section and no interpreter, so it runs on a machine without a C library.
func TestBinaryIsStatic(t *testing.T) {
	f, err := elf.Open(shoalBinary(t))
	if err != nil {
		t.Skipf("not an ELF binary on this platform: %v", err)
	}
	defer f.Close()
	if s := f.Section(".dynamic"); s != nil {
		t.Fatal("the binary has a .dynamic section: it is linked dynamically")
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_DYNAMIC || p.Type == elf.PT_INTERP {
			t.Fatalf("the binary has a %v program header: it is linked dynamically", p.Type)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "CGO_ENABLED=0 go build -o shoal ./cmd/shoal") {
		t.Fatal("the README's build command does not build a static binary")
	}
}

// The metrics endpoint has the run's gauges, and with --linger stays up after the run until
// a signal ends the wait (a clean stop).
func TestMetricsGaugesAndLinger(t *testing.T) {
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	common := trainingArgs(1, "--fraction", "1", "--min-clients", "1", "--rounds", "2", "--lr", "0.05", "--target-accuracy", "0")
	srv := startProc(t, "server", append([]string{"server", "--insecure", "--listen", addr, "--out", t.TempDir(), "--wait-clients", "1",
		"--metrics-listen", metricsAddr, "--linger", "1h", "--heartbeat", "1s"}, common...)...)
	startClients(t, addr, "", 1)
	srv.waitFor("metrics stay up", 60*time.Second)
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("the metrics endpoint is down after the run: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	gauge := func(name string) float64 {
		for _, line := range strings.Split(string(body), "\n") {
			var v float64
			if strings.HasPrefix(line, name+" ") {
				if _, err := fmt.Sscanf(line[len(name)+1:], "%g", &v); err == nil {
					return v
				}
			}
		}
		t.Fatalf("no gauge %s in:\n%s", name, body)
		return 0
	}
	if gauge("shoal_round") != 2 || gauge("shoal_rounds_planned") != 2 || gauge("shoal_round_seconds") <= 0 {
		t.Fatalf("round gauges: %v %v %v", gauge("shoal_round"), gauge("shoal_rounds_planned"), gauge("shoal_round_seconds"))
	}
	if a, l := gauge("shoal_test_accuracy"), gauge("shoal_test_loss"); a <= 0 || a > 1 || l <= 0 {
		t.Fatalf("accuracy %v, loss %v", a, l)
	}
	if gauge("shoal_epsilon_spent") != 0 || gauge("shoal_epsilon_budget") != 0 {
		t.Fatal("ε gauges of a run without DP are not 0")
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := srv.wait(30 * time.Second); err != nil {
		t.Fatalf("SIGTERM while lingering: %v, want exit 0", err)
	}
}

// Distributed DP over the network with SecAgg+ and two clients crashing in the middle of round
// 2's protocol (after sharing keys, before their masked input): the round completes with the
// four survivors, and the ε the server reports is the one of the noise shares actually summed
// (6, 4, 4), not of the six planned.
func TestDistributedDPOverNetworkSurvivesTwoCrashedClients(t *testing.T) {
	const clients = 6
	dp := []string{"--sampling", "poisson", "--fraction", "1", "--rounds", "3", "--lr", "0.05", "--target-accuracy", "0",
		"--secure-sum", "secaggplus", "--max-dropout", "0.34", "--dp", "distributed", "--mechanism", "skellam",
		"--noise-multiplier", "0.5", "--clip", "1"}
	addr := freeAddr(t)
	// No --seed: a DP deployment refuses it (clients take their shards by --partition-index).
	srv := startProc(t, "server", append([]string{"server", "--insecure", "--listen", addr, "--out", filepath.Join(t.TempDir(), "run"),
		"--wait-clients", "6", "--fit-timeout", "60s", "--stage-timeout", "30s", "--heartbeat", "1s", "--json",
		"--dataset", "synthetic", "--data-seed", "11", "--model", "logreg", "--clients", fmt.Sprint(clients)}, dp...)...)
	for i, name := range clientNames(clients) {
		cargs := append([]string{"client", "--insecure", "--server", addr, "--name", name, "--partition-index", fmt.Sprint(i),
			"--max-backoff", "300ms", "--require-ddp-noise", "0.5"}, trainingArgs(clients)...)
		if i >= 4 {
			cargs = append(cargs, "--fault-exit-at", "2/2") // stage 2: the masked input
		}
		startProc(t, name, cargs...)
	}
	if err := srv.wait(90 * time.Second); err != nil {
		t.Fatalf("server: %v", err)
	}
	s := decodeSummary(t, srv.stdout.Bytes())
	counts := []int{}
	for _, h := range s.History {
		counts = append(counts, h.Participants)
	}
	if s.RoundsRun != 3 || !slices.Equal(counts, []int{6, 4, 4}) || s.History[1].Dropped != 2 {
		t.Fatalf("rounds %d, participants %v: %+v", s.RoundsRun, counts, s.History)
	}
	// The same mechanism, accounted by hand with the shares summed each round.
	var o simOptions
	if err := parseWithConfig(simulateFlags(&o, io.Discard), append([]string{"--dataset", "synthetic", "--model", "logreg",
		"--clients", fmt.Sprint(clients)}, dp...)); err != nil {
		t.Fatal(err)
	}
	epsilon := func(shares []int) []float64 {
		fed, err := data.Synthetic(1, 1, clients, 11)
		if err != nil {
			t.Fatal(err)
		}
		plan, err := buildPlan(o, fed, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		var out []float64
		for r, n := range shares {
			if _, err := plan.engine.Privacy.Finalize(r+1, make([]float64, len(plan.params)), n, 0); err != nil {
				t.Fatal(err)
			}
			eps, _, err := plan.engine.Privacy.Account(r + 1)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, eps)
		}
		return out
	}
	want, planned := epsilon(counts), epsilon([]int{6, 6, 6})
	for i, h := range s.History {
		if !close64(h.Epsilon, want[i], 1e-9) {
			t.Fatalf("round %d: reported ε %v, the shares summed give %v (six shares would give %v)", i+1, h.Epsilon, want[i], planned[i])
		}
	}
	if close64(want[2], planned[2], 1e-6) {
		t.Fatalf("the accounting does not depend on the shares summed: %v vs %v", want, planned)
	}
}

// TestDistributedDPAdaptiveClipOverNetwork: adaptive clipping under distributed DP over gRPC —
// the server announces each round's clip in the SecAgg setup, the clients (building their half
// from the announced Spec) clip to it and send their noised count bits inside the secure sum, and
// the clip moves from the noised count: from far above every norm it falls each round.
func TestDistributedDPAdaptiveClipOverNetwork(t *testing.T) {
	const clients = 6
	addr := freeAddr(t)
	srv := startProc(t, "server", "server", "--insecure", "--listen", addr, "--out", filepath.Join(t.TempDir(), "run"),
		"--wait-clients", "6", "--fit-timeout", "60s", "--stage-timeout", "30s", "--heartbeat", "1s", "--json",
		"--dataset", "synthetic", "--data-seed", "11", "--model", "logreg", "--clients", fmt.Sprint(clients),
		"--sampling", "poisson", "--fraction", "1", "--rounds", "3", "--lr", "0.05", "--target-accuracy", "0",
		"--secure-sum", "secaggplus", "--max-dropout", "0.34", "--dp", "distributed", "--mechanism", "skellam",
		"--noise-multiplier", "0.5", "--clip", "50", "--adaptive-clip", "0.5")
	// The floor bounds the update and the count together: (0.5⁻² + (2·0.05·6)⁻²)^−½ ≈ 0.38.
	for i, name := range clientNames(clients) {
		startProc(t, name, append([]string{"client", "--insecure", "--server", addr, "--name", name, "--partition-index", fmt.Sprint(i),
			"--max-backoff", "300ms", "--require-ddp-noise", "0.38"}, trainingArgs(clients)...)...)
	}
	if err := srv.wait(90 * time.Second); err != nil {
		t.Fatalf("server: %v", err)
	}
	s := decodeSummary(t, srv.stdout.Bytes())
	if s.RoundsRun != 3 || s.History[0].ClipNorm != 50 {
		t.Fatalf("rounds %d: %+v", s.RoundsRun, s.History)
	}
	for i := 1; i < len(s.History); i++ {
		if c, prev := s.History[i].ClipNorm, s.History[i-1].ClipNorm; !(c < prev*0.98 && c > prev*0.8) || s.History[i].Participants != clients {
			t.Fatalf("round %d: clip %v after %v, %d participants", i+1, c, prev, s.History[i].Participants)
		}
	}
	if all := strings.Join(s.Protection, "\n"); !strings.Contains(all, "server sees only the noised count") {
		t.Fatalf("summary:\n%s", all)
	}
}
