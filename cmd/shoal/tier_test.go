package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"shoal/fl"
	"shoal/store/backend"
	"shoal/store/postgres/pgtest"
	"shoal/tier/tiertest"
	"shoal/ui"
)

// tierRig is a population on loopback: a real etcd cluster, edges, coordinators and devices,
// every one a real process.
type tierRig struct {
	t       *testing.T
	etcd    *tiertest.Cluster
	pop     string
	store   string
	edges   map[string]*proc
	devAddr map[string]string
}

func newTierRig(t *testing.T, etcdMembers int) *tierRig {
	return &tierRig{t: t, etcd: tiertest.Start(t, etcdMembers), pop: "p" + fmt.Sprint(time.Now().UnixNano()%100000),
		store: filepath.Join(t.TempDir(), "run.db"), edges: map[string]*proc{}, devAddr: map[string]string{}}
}

func (r *tierRig) edge(name string, extra ...string) *proc {
	dev, internal := freeAddr(r.t), freeAddr(r.t)
	p := startProc(r.t, name, append([]string{"edge", "--etcd", r.etcd.Endpoints(), "--population", r.pop, "--name", name, "--insecure",
		"--listen", dev, "--internal-listen", internal, "--heartbeat", "500ms", "--lease-ttl", "2s"}, extra...)...)
	r.edges[name], r.devAddr[name] = p, dev
	return p
}

func (r *tierRig) coordinator(name string, extra ...string) *proc {
	args := append([]string{"coordinator", "--etcd", r.etcd.Endpoints(), "--population", r.pop, "--name", name, "--insecure",
		"--store", r.store, "--lease-ttl", "3s", "--json", "--stage-timeout", "5s", "--fit-timeout", "20s"}, extra...)
	return startProc(r.t, name, args...)
}

// devices starts n devices in one process (--replicas) on an edge, shards from first.
func (r *tierRig) devices(edge string, first, n, clients int, extra ...string) *proc {
	args := append([]string{"client", "--server", r.devAddr[edge], "--insecure", "--name", "d" + fmt.Sprint(first),
		"--partition-index", fmt.Sprint(first), "--replicas", fmt.Sprint(n), "--max-backoff", "300ms"}, trainingArgs(clients)...)
	return startProc(r.t, "devices-"+edge, append(args, extra...)...)
}

// checkHistory asserts that the coordinator's summary and the run store both hold rounds
// 1…want, each exactly once, and returns the store's round reports.
func (r *tierRig) checkHistory(p *proc, want int) (simSummary, []fl.RoundReport) {
	t := r.t
	t.Helper()
	s := decodeSummary(t, p.stdout.Bytes())
	if s.RoundsRun != want || len(s.History) != want {
		t.Fatalf("%d rounds run, %d in the history; want %d: %+v", s.RoundsRun, len(s.History), want, s)
	}
	st, err := backend.Open(context.Background(), r.store, backend.ReadOnly, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	id, _, err := st.LatestRun()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := st.History(id)
	if err != nil {
		t.Fatal(err)
	}
	var reps []fl.RoundReport
	for i, row := range rows {
		var rep fl.RoundReport
		if err := json.Unmarshal(row, &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Round != i+1 || s.History[i].Round != i+1 {
			t.Fatalf("store round %d at %d, summary %+v: a round lost or repeated", rep.Round, i+1, s.History)
		}
		reps = append(reps, rep)
	}
	if len(reps) != want {
		t.Fatalf("the store holds %d rounds, want %d", len(reps), want)
	}
	return s, reps
}

// SIGKILL of the active coordinator mid-run: the standby takes over within the lease and
// continues after the last committed round, and the run ends with every round committed once.
// One of the three etcd members is SIGKILLed too, mid-run: nothing changes.
//
// The faults do not change the cohorts here (every device, every round), so the final model is
// bit for bit the one of the same run without faults.
func TestTierCoordinatorKilled(t *testing.T) {
	ref := newTierRig(t, 1)
	ref.edge("e1")
	ref.edge("e2")
	c0 := ref.coordinator("c0", killedRunArgs...)
	ref.devices("e1", 0, 4, 8)
	ref.devices("e2", 4, 4, 8)
	if err := c0.wait(60 * time.Second); err != nil {
		t.Fatalf("fault-free run: %v", err)
	}
	want := ref.finalModel()
	t.Run("sqlite", func(t *testing.T) { coordinatorKilled(t, "", want) })
	// The same with the run store in PostgreSQL: the one both coordinators would reach from
	// different machines.
	t.Run("postgres", func(t *testing.T) { coordinatorKilled(t, pgtest.NewStore(t), want) })
}

var killedRunArgs = trainingArgs(8, "--rounds", "8", "--lr", "0.05", "--target-accuracy", "0", "--goal", "8", "--over-select", "1", "--min-group", "2")

// finalModel is the model of the last round committed to the rig's store.
func (r *tierRig) finalModel() []float32 {
	r.t.Helper()
	st, err := backend.Open(context.Background(), r.store, backend.ReadOnly, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	defer st.Close()
	id, _, err := st.LatestRun()
	if err != nil {
		r.t.Fatal(err)
	}
	_, model, _, _, err := st.LastRound(id)
	if err != nil {
		r.t.Fatal(err)
	}
	return model
}

func coordinatorKilled(t *testing.T, storeURL string, want []float32) {
	r := newTierRig(t, 3)
	if storeURL != "" {
		r.store = storeURL
	}
	r.edge("e1")
	r.edge("e2")
	common := killedRunArgs
	c1 := r.coordinator("c1", common...)
	c1.waitFor("elected coordinator", 20*time.Second)
	c2 := r.coordinator("c2", common...)
	c2.waitFor("standby", 20*time.Second)
	r.devices("e1", 0, 4, 8)
	r.devices("e2", 4, 4, 8)
	c1.waitFor("round   2/8", 30*time.Second)
	r.etcd.Members[0].Kill()
	c1.waitFor("round   3/8", 30*time.Second)
	c1.kill()
	killed := time.Now()
	_ = c1.wait(10 * time.Second)
	c2.waitFor("elected coordinator", 10*time.Second)
	took := time.Since(killed)
	if took > 5*time.Second {
		t.Fatalf("standby elected %v after the SIGKILL, lease 3 s", took)
	}
	t.Logf("standby elected %v after the SIGKILL of the active coordinator (lease 3 s)", took.Round(10*time.Millisecond))
	line := c2.waitFor("taking over run", 10*time.Second)
	var after int
	if _, err := fmt.Sscanf(line[strings.Index(line, "after round"):], "after round %d", &after); err != nil || after < 3 {
		t.Fatalf("took over %q", line)
	}
	if err := c2.wait(60 * time.Second); err != nil {
		t.Fatalf("coordinator c2: %v", err)
	}
	s, reps := r.checkHistory(c2, 8)
	if strings.Contains(c2.log(), fmt.Sprintf("round %3d/8", after)) {
		t.Fatalf("round %d run again after the takeover", after)
	}
	for _, h := range reps {
		if h.Abandoned != "" || h.Participants != 8 || h.Sampled != 8 {
			t.Fatalf("round %d: %d participants of %d sampled, want the goal 8 of 8", h.Round, h.Participants, h.Sampled)
		}
	}
	if s.FinalAccuracy < 0.6 {
		t.Fatalf("final accuracy %.3f: the tier did not train", s.FinalAccuracy)
	}
	for name, e := range r.edges {
		if err := e.wait(20 * time.Second); err != nil {
			t.Fatalf("edge %s after the run: %v", name, err)
		}
	}
	if got := r.finalModel(); !slices.Equal(got, want) {
		t.Fatalf("final model after the faults differs from the fault-free run's (first coordinates %v, want %v)", got[:4], want[:4])
	}
}

// SecAgg+ per group on the edges: an edge that dies mid-round (after its devices trained,
// before its group's sum) loses only its group: that round and the next go on with the other
// edge's group, whose sum alone the coordinator sees; selection waits --selection-timeout for
// the goal, then starts with the --min-fraction the surviving edge holds.
func TestTierSecAggEdgeKilled(t *testing.T) {
	r := newTierRig(t, 3)
	r.edge("e1")
	r.edge("e2", "--fault-exit-at", "3")
	common := trainingArgs(10, "--rounds", "5", "--lr", "0.05", "--target-accuracy", "0", "--secure-sum", "secaggplus",
		"--goal", "10", "--over-select", "1", "--min-fraction", "0.5", "--selection-timeout", "1s", "--min-results", "3", "--min-group", "4")
	c1 := r.coordinator("c1", common...)
	r.devices("e1", 0, 5, 10)
	r.devices("e2", 5, 5, 10)
	if err := c1.wait(90 * time.Second); err != nil {
		t.Fatalf("coordinator: %v", err)
	}
	_, reps := r.checkHistory(c1, 5)
	for _, h := range reps {
		want := 10
		if h.Round >= 3 {
			want = 5
		}
		if h.Abandoned != "" || h.Participants != want {
			t.Fatalf("round %d: %d participants (abandoned %q), want %d", h.Round, h.Participants, h.Abandoned, want)
		}
	}
	if reps[2].Sampled != 10 {
		t.Fatalf("round 3 sampled %d, want 10 (the edge died after the selection)", reps[2].Sampled)
	}
	if !strings.Contains(c1.log(), "aggregation group lost") {
		t.Fatal("the coordinator did not report the lost group")
	}
	if reps[4].Accuracy < 0.7 {
		t.Fatalf("final accuracy %.3f", reps[4].Accuracy)
	}
}

// Threshold HE per group, end to end with real processes: each edge's group of four runs a key
// ceremony every round among three of its devices (threshold 2), the devices encrypt under
// their group's key, the committee decrypts the group's sum, and the coordinator adds the group
// sums. Every round keeps all eight devices, and the final model equals the same run's with
// plain groups within CKKS precision: each group's decrypted sum and weight are within
// he.Params.MaxAbsError(2) = 2.4·10⁻⁶ of the exact ones, and three rounds of logreg do not
// amplify that beyond 10⁻⁵ per coordinate.
func TestTierHEGroupsEqualPlainGroups(t *testing.T) {
	args := trainingArgs(8, "--rounds", "3", "--lr", "0.05", "--target-accuracy", "0", "--goal", "8", "--over-select", "1", "--min-group", "4")
	models := map[string][]float32{}
	for _, secure := range []string{"none", "he"} {
		r := newTierRig(t, 1)
		r.edge("e1")
		r.edge("e2")
		c := r.coordinator("c-"+secure, append(slices.Clone(args), "--secure-sum", secure, "--he-committee", "3", "--he-threshold", "2")...)
		r.devices("e1", 0, 4, 8)
		r.devices("e2", 4, 4, 8)
		if err := c.wait(120 * time.Second); err != nil {
			t.Fatalf("coordinator (%s): %v", secure, err)
		}
		_, reps := r.checkHistory(c, 3)
		for _, h := range reps {
			if h.Abandoned != "" || h.Participants != 8 {
				t.Fatalf("%s round %d: %d participants (abandoned %q), want 8", secure, h.Round, h.Participants, h.Abandoned)
			}
		}
		if secure == "he" && !strings.Contains(r.edges["e1"].log(), "(he group sums)") {
			t.Fatalf("the edge does not say it runs HE groups:\n%s", r.edges["e1"].log())
		}
		models[secure] = r.finalModel()
	}
	plain, enc := models["none"], models["he"]
	if len(plain) != len(enc) || len(plain) == 0 {
		t.Fatalf("models of %d and %d coordinates", len(plain), len(enc))
	}
	worst := 0.0
	for i := range plain {
		worst = max(worst, math.Abs(float64(plain[i]-enc[i])))
	}
	t.Logf("HE groups against plain groups: largest difference %.3g over %d coordinates", worst, len(plain))
	if worst > 1e-5 || slices.Equal(plain, enc) && worst != 0 {
		t.Fatalf("HE groups' model differs from plain groups' by %.3g", worst)
	}
}

// HE groups with mutual TLS, as deployed: each edge checks uploads and approvals against the CA
// certificate it holds, each device signs its ceremony messages, endorsements and uploads with
// its own certificate and verifies every member's against the same CA, and requires HE with a
// threshold of at least 2 (--require-secure-sum he --min-threshold 2).
func TestTierHEGroupsMutualTLS(t *testing.T) {
	names := []string{"coordinator"}
	for i := range 4 {
		names = append(names, fmt.Sprintf("a-%d", i), fmt.Sprintf("b-%d", i))
	}
	certs := certsFor(t, names...)
	r := newTierRig(t, 1)
	tr := trainingArgs(8)
	for _, e := range []string{"a", "b"} {
		dev, internal := freeAddr(t), freeAddr(t)
		r.edges[e] = startProc(t, "edge-"+e, "edge", "--etcd", r.etcd.Endpoints(), "--population", r.pop, "--name", e, "--certs", certs,
			"--listen", dev, "--internal-listen", internal, "--heartbeat", "500ms", "--lease-ttl", "2s")
		r.devAddr[e] = dev
	}
	c := startProc(t, "coordinator", append([]string{"coordinator", "--etcd", r.etcd.Endpoints(), "--population", r.pop, "--name", "c",
		"--certs", certs, "--store", r.store, "--lease-ttl", "3s", "--json", "--stage-timeout", "10s", "--fit-timeout", "20s",
		"--rounds", "2", "--target-accuracy", "0", "--goal", "8", "--over-select", "1", "--min-group", "4",
		"--secure-sum", "he", "--he-committee", "3", "--he-threshold", "2"}, tr...)...)
	for i, e := range []string{"a", "b"} {
		startProc(t, "devices-"+e, append([]string{"client", "--server", r.devAddr[e], "--certs", certs, "--name", e, "--replicas", "4",
			"--partition-index", fmt.Sprint(4 * i), "--max-backoff", "300ms", "--require-secure-sum", "he", "--min-threshold", "2"}, tr...)...)
	}
	if err := c.wait(90 * time.Second); err != nil {
		t.Fatalf("coordinator: %v", err)
	}
	_, reps := r.checkHistory(c, 2)
	for _, h := range reps {
		if h.Abandoned != "" || h.Participants != 8 {
			t.Fatalf("round %d: %d participants (abandoned %q), want 8", h.Round, h.Participants, h.Abandoned)
		}
	}
	if !strings.Contains(r.edges["a"].log(), "(he group sums)") {
		t.Fatalf("edge a does not run HE groups:\n%s", r.edges["a"].log())
	}
}

// Central DP across a takeover: the accountant moves with the checkpoint, so every committed
// round's ε — before and after the SIGKILL of the active coordinator — is the ε an
// uninterrupted run of the same Poisson rate and noise reports for that round.
func TestTierDPTakeoverKeepsTheAccountant(t *testing.T) {
	r := newTierRig(t, 3)
	r.edge("e1")
	r.edge("e2")
	dp := []string{"--rounds", "6", "--lr", "0.05", "--target-accuracy", "0", "--dp", "central", "--sampling", "poisson",
		"--fraction", "0.6", "--noise-multiplier", "1.2", "--clip", "1"}
	coordArgs := append([]string{"--dataset", "synthetic", "--data-seed", "11", "--model", "logreg", "--clients", "10", "--min-group", "1"}, dp...)
	c1 := r.coordinator("c1", coordArgs...)
	c1.waitFor("elected coordinator", 20*time.Second)
	c2 := r.coordinator("c2", coordArgs...)
	r.devices("e1", 0, 5, 10)
	r.devices("e2", 5, 5, 10)
	c1.waitFor("round   2/6", 60*time.Second)
	c1.kill()
	_ = c1.wait(10 * time.Second)
	c2.waitFor("taking over run", 15*time.Second)
	if err := c2.wait(60 * time.Second); err != nil {
		t.Fatalf("coordinator c2: %v", err)
	}
	_, reps := r.checkHistory(c2, 6)
	var out, errb bytes.Buffer
	sim := append([]string{"simulate", "--out", filepath.Join(t.TempDir(), "sim"), "--json"}, trainingArgs(10, dp...)...)
	if code := run(context.Background(), sim, &out, &errb); code != 0 {
		t.Fatalf("simulate: %s", errb.String())
	}
	want := decodeSummary(t, out.Bytes())
	for i, h := range reps {
		if h.Epsilon <= 0 || !close64(h.Epsilon, want.History[i].Epsilon, 1e-9) || h.ClipNorm != 1 {
			t.Fatalf("round %d: ε %v clip %v after the takeover, an uninterrupted run: ε %v", h.Round, h.Epsilon, h.ClipNorm, want.History[i].Epsilon)
		}
	}
}

// Clear errors: misused flags are usage errors (status 2) that name the flag, and an edge or
// coordinator started while etcd is unreachable waits and retries with a message instead of
// crashing.
func TestTierErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"coordinator", "--insecure", "--store", "x.db"}, "--population"},
		{[]string{"coordinator", "--population", "p", "--insecure"}, "--store is required"},
		{[]string{"coordinator", "--population", "p", "--insecure", "--store", "x.db", "--secure-sum", "he", "--min-group", "3"}, "--he-committee 5 is larger than --min-group 3"},
		{[]string{"coordinator", "--population", "p", "--insecure", "--store", "x.db", "--goal", "5", "--sampling", "poisson"}, "poisson"},
		{[]string{"coordinator", "--population", "p", "--insecure", "--store", "x.db", "--listen", ":1"}, "--listen means nothing"},
		{[]string{"coordinator", "--population", "p", "--insecure", "--store", "x.db", "--ui", "0.0.0.0:1"}, "--ui-certs"},
		{[]string{"edge", "--population", "p"}, "--certs"},
		{[]string{"edge", "--population", "a/b", "--insecure"}, "--population"},
		{[]string{"coordinator", "--population", "p", "--insecure", "--store", "x.db", "--dataset", "synthetic", "--model", "logreg"}, "--data-seed"},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), tc.args, &out, &errb); code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: status %d, %q; want 2 and %q", tc.args, code, errb.String(), tc.want)
		}
	}
	dead := "http://" + freeAddr(t) // nothing listens there
	var procs []*proc
	for _, args := range [][]string{
		{"edge", "--etcd", dead, "--population", "p", "--name", "e", "--insecure", "--listen", freeAddr(t), "--internal-listen", freeAddr(t)},
		{"coordinator", "--etcd", dead, "--population", "p", "--name", "c", "--insecure", "--store", filepath.Join(t.TempDir(), "run.db")},
	} {
		procs = append(procs, startProc(t, args[0], args...))
	}
	for _, p := range procs { // started together: both retry at once
		deadline := time.Now().Add(20 * time.Second)
		for strings.Count(p.log(), "etcd unreachable; retrying") < 3 {
			select {
			case <-p.done:
				t.Fatalf("%s exited while etcd was unreachable: %v\n%s", p.name, p.err, p.log())
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: fewer than 3 retries in 20 s:\n%s", p.name, p.log())
			}
		}
	}
}

// PostgreSQL restarting mid-run makes the coordinator wait and retry, not crash: the commit
// that finds the database down waits for it, and the run ends with every round committed once.
func TestTierPostgresRestart(t *testing.T) {
	pg, err := pgtest.StartCluster()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Destroy)
	r := newTierRig(t, 1)
	r.store = pg.URL()
	r.edge("e1")
	c := r.coordinator("c1", trainingArgs(6, "--rounds", "30", "--local-epochs", "5", "--target-accuracy", "0", "--fraction", "1",
		"--min-clients", "6", "--min-group", "2")...)
	r.devices("e1", 0, 6, 6)
	c.waitFor("round   2/30", 60*time.Second)
	if err := pg.Stop("fast"); err != nil {
		t.Fatalf("stop PostgreSQL: %v\n%s", err, pg.Log())
	}
	c.waitFor("database unavailable, retrying", 20*time.Second)
	time.Sleep(time.Second)
	if err := pg.Start(); err != nil {
		t.Fatalf("start PostgreSQL: %v\n%s", err, pg.Log())
	}
	if err := c.wait(90 * time.Second); err != nil {
		t.Fatalf("coordinator: %v", err)
	}
	r.checkHistory(c, 30)
}

// The active coordinator's dashboard (--ui): the run as etcd and the store name it, its rounds
// with their ε as they commit, its protection statement, and a clients page that says the
// devices are on the edges. A standby serves nothing until elected; after the SIGKILL of the
// active one it serves the same run, with the rounds committed before the takeover.
func TestTierCoordinatorDashboard(t *testing.T) {
	r := newTierRig(t, 1)
	r.edge("e1")
	r.edge("e2")
	args := []string{"--dataset", "synthetic", "--data-seed", "11", "--model", "logreg", "--clients", "10", "--min-group", "1",
		"--rounds", "1000", "--lr", "0.01", "--target-accuracy", "0", "--dp", "central", "--sampling", "poisson",
		"--fraction", "0.6", "--noise-multiplier", "5", "--clip", "1", "--ui", "127.0.0.1:0"}
	c1 := r.coordinator("c1", args...)
	c1.waitFor("elected coordinator", 20*time.Second)
	c2 := r.coordinator("c2", args...)
	c2.waitFor("standby", 20*time.Second)
	r.devices("e1", 0, 5, 10)
	r.devices("e2", 5, 5, 10)
	url := dashboardURL(t, c1)
	c1.waitFor("round   3/", 60*time.Second)
	var runs struct {
		Runs []struct{ ID, Name, Kind string }
	}
	getJSON(t, url+"api/runs", &runs)
	if len(runs.Runs) != 1 || !strings.HasPrefix(runs.Runs[0].Name, r.pop+"-run-") || runs.Runs[0].Kind != "live coordinator" {
		t.Fatalf("/api/runs: %+v, want the one run %s-run-N of a live coordinator", runs, r.pop)
	}
	id := runs.Runs[0].ID
	var run struct {
		Protection  []string `json:"protection"`
		DP          bool     `json:"dp"`
		Deployment  bool     `json:"deployment"`
		ClientsNote string   `json:"clients_note"`
	}
	getJSON(t, url+"api/runs/"+id, &run)
	if !run.DP || len(run.Protection) < 2 || !strings.Contains(strings.Join(run.Protection, " "), "noise multiplier z = 5") ||
		run.Deployment || !strings.Contains(run.ClientsNote, "edges") {
		t.Fatalf("/api/runs/%s: %+v", id, run)
	}
	page := getBody(t, url+"runs/"+id+"/clients")
	if !strings.Contains(page, "not to this coordinator") {
		t.Fatalf("the clients page does not say the devices are on the edges:\n%s", page)
	}
	before := dashboardRounds(t, url, id)
	if strings.Contains(c2.log(), "dashboard") {
		t.Fatalf("the standby serves a dashboard:\n%s", c2.log())
	}
	c1.kill()
	_ = c1.wait(10 * time.Second)
	url2 := dashboardURL(t, c2)
	c2.waitFor("taking over run", 15*time.Second)
	after := dashboardRounds(t, url2, id)
	if len(after) < len(before) {
		t.Fatalf("the new coordinator's dashboard shows %d rounds, the deposed one's showed %d", len(after), len(before))
	}
}

// dashboardRounds returns a live dashboard's rounds, checking that they are 1, 2, … and each
// carries its ε.
func dashboardRounds(t *testing.T, url, id string) []ui.Round {
	t.Helper()
	var rounds struct{ Rounds []ui.Round }
	getJSON(t, url+"api/runs/"+id+"/rounds", &rounds)
	if len(rounds.Rounds) < 2 {
		t.Fatalf("%s: %d rounds, want at least 2", url, len(rounds.Rounds))
	}
	for i, r := range rounds.Rounds {
		if r.Round != i+1 || !(r.Epsilon > 0) {
			t.Fatalf("%s: round %d at %d with ε %v", url, r.Round, i+1, r.Epsilon)
		}
	}
	return rounds.Rounds
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", url, resp.Status, err)
	}
	return string(b)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(getBody(t, url)), v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
