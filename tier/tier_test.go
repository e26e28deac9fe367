package tier

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"shoal/fl"
	tierv1 "shoal/proto/shoal/tier/v1"
	"shoal/securesum"
)

// Reservoir sampling is uniform: over many draws every index is selected k/n of the time, and a
// draw never repeats an index.
func TestReservoirUniform(t *testing.T) {
	const n, k, draws = 50, 10, 20000
	rng := rand.New(rand.NewPCG(1, 2))
	counts := make([]int, n)
	for range draws {
		seen := map[fl.ClientID]bool{}
		for _, id := range Reservoir(n, k, rng) {
			if seen[id] || id < 0 || id >= n {
				t.Fatalf("index %d repeated or out of range", id)
			}
			seen[id] = true
			counts[id]++
		}
		if len(seen) != k {
			t.Fatalf("%d drawn, want %d", len(seen), k)
		}
	}
	want := float64(draws) * k / n
	chi := 0.0
	for _, c := range counts {
		chi += (float64(c) - want) * (float64(c) - want) / want
	}
	// 49 degrees of freedom: the 99.9 % quantile is about 85.
	if chi > 85 {
		t.Fatalf("χ² = %.1f over %d indices: not uniform (%v)", chi, n, counts)
	}
	if got := Reservoir(5, 10, rng); len(got) != 5 {
		t.Fatalf("k > n: %v", got)
	}
}

// Groups stay on one edge and hold at least MinGroup devices; an edge holding fewer of the
// cohort is left out of the round, with a reason.
func TestPlanGroups(t *testing.T) {
	c, err := NewCoordinator(CoordinatorConfig{Members: &Members{}, Dial: nil, MinGroup: 3})
	if err == nil {
		t.Fatal("no dialer accepted")
	}
	c = &Coordinator{cfg: CoordinatorConfig{MinGroup: 3}, rounds: map[int]*roundPlan{}, needed: map[int]int{}}
	for i := range 7 {
		c.snapshot = append(c.snapshot, device{edge: "a", id: int64(i)})
	}
	for i := range 2 {
		c.snapshot = append(c.snapshot, device{edge: "b", id: int64(i)})
	}
	cohort := []fl.ClientID{0, 1, 2, 3, 4, 5, 6, 7, 8}
	p, left := c.plan(1, cohort)
	if len(left) != 2 || left[7] == nil || left[8] == nil {
		t.Fatalf("left out %v, want edge b's two devices", left)
	}
	sizes := 0
	for _, g := range p.groups {
		if g.edge != "a" || len(g.members) < 3 {
			t.Fatalf("group %+v", g)
		}
		sizes += len(g.members)
	}
	if len(p.groups) != 2 || sizes != 7 {
		t.Fatalf("%d groups of %d devices, want 2 groups of 7", len(p.groups), sizes)
	}
	meta := c.Groups(1)
	if len(meta) != 2 || meta[0].Size+meta[1].Size != 7 {
		t.Fatalf("round metadata %+v", meta)
	}
}

// The master aggregation adds group sums and refuses a reply that could poison it: wrong
// length, non-finite values, more devices than the group has.
func TestGroupedServerRefusesBadGroupSums(t *testing.T) {
	c := &Coordinator{cfg: CoordinatorConfig{MinGroup: 2}, rounds: map[int]*roundPlan{}, needed: map[int]int{}}
	for i := range 4 {
		c.snapshot = append(c.snapshot, device{edge: "a", id: int64(10 + i)})
	}
	c.plan(1, []fl.ClientID{0, 1, 2, 3})
	g := &Grouped{Coord: c}
	srv, err := g.NewServer(1, []fl.ClientID{0, 1, 2, 3}, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	msgs, done, err := srv.Next()
	if err != nil || done || len(msgs) != 2 {
		t.Fatalf("first stage: %d messages, done %v, %v", len(msgs), done, err)
	}
	reply := func(sum []float64, w float64, n int64) []byte {
		b, _ := proto.Marshal(&tierv1.SumGroupReply{Sum: encodeFloats64(sum), Weight: w, Count: n})
		return b
	}
	var leaders []fl.ClientID
	for l, m := range msgs {
		var req tierv1.SumGroupRequest
		if err := proto.Unmarshal(m, &req); err != nil || len(req.GetHolders()) != 2 || req.GetHolders()[0] < 10 {
			t.Fatalf("request %v (%v): want the edge's own ids of 2 holders", &req, err)
		}
		leaders = append(leaders, l)
	}
	for _, bad := range [][]byte{reply([]float64{1}, 2, 2), reply([]float64{1, math.NaN()}, 2, 2), reply([]float64{1, 1}, 2, 3),
		reply([]float64{1, 1}, 0, 2), []byte{0xff}} {
		if err := srv.Receive(leaders[0], bad); err == nil {
			t.Fatalf("bad group sum %x accepted", bad)
		}
	}
	if err := srv.Receive(leaders[0], reply([]float64{1, 2}, 2, 2)); err != nil {
		t.Fatal(err)
	}
	srv.Drop(leaders[1]) // that group's edge died: the round goes on with the other
	if _, done, _ := srv.Next(); !done {
		t.Fatal("not done after the one stage")
	}
	res, err := srv.Result()
	if err != nil || res.Count != 2 || res.Weight != 2 || res.Sum[0] != 1 || res.Sum[1] != 2 {
		t.Fatalf("result %+v, %v", res, err)
	}
}

// Pace steering's window averages N·T/D, is spread evenly over [0, 2R] (no gap before the first
// returns, no herd) and stays in bounds; an edge turns devices away only once it holds its share
// of the demand, and aims returns at Slack × Demand.
func TestPaceWindow(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n, d, secs = 20000, 1000, 30.0 // R = 600 s
	var sum, lo, hi time.Duration = 0, time.Hour, 0
	for range 10000 {
		w := PaceWindow(n, d, secs, rng)
		sum += w
		lo, hi = min(lo, w), max(hi, w)
	}
	mean := sum / 10000
	if mean < 585*time.Second || mean > 615*time.Second || lo > 5*time.Second || hi > 1200*time.Second || hi < 1190*time.Second {
		t.Fatalf("windows mean %v in [%v, %v], want mean 600 s over [1 s, 1200 s]", mean, lo, hi)
	}
	// Evenly spread: each sixth of [0, 2R] gets a sixth of the windows (±10 %).
	var bins [6]int
	for range 6000 {
		w := PaceWindow(n, d, secs, rng)
		bins[min(int(w/(200*time.Second)), 5)]++
	}
	for i, c := range bins {
		if c < 900 || c > 1100 {
			t.Fatalf("windows per 200 s bin %v: bin %d holds %d of 6000", bins, i, c)
		}
	}
	if w := PaceWindow(10, 1000, 0.01, rng); w != MinPaceWindow {
		t.Fatalf("demand above the population: %v, want the minimum", w)
	}
	if w := PaceWindow(1e9, 1, 60, rng); w != MaxPaceWindow {
		t.Fatalf("huge population: %v, want the maximum", w)
	}
	p := NewPacer(2)
	if p.Steer("x", 1000) != 0 {
		t.Fatal("steered before any round metadata")
	}
	p.Set(&RoundMeta{Population: 100, Demand: 10, RoundSeconds: 5, Edges: 2}) // hold 2·10/2 = 10
	if p.Steer("x", 9) != 0 || p.Steer("x", 10) < MinPaceWindow {
		t.Fatalf("hold %d: steering at 9 and 10 connected wrong", p.Hold())
	}
	// Returns are aimed at Slack × Demand = 20 per 5 s round: windows average 100·5/20 = 25 s.
	p.Set(&RoundMeta{Population: 100, Demand: 10, RoundSeconds: 5, Edges: 2})
	var total time.Duration
	for range 4000 {
		total += p.Window()
	}
	if mean := total / 4000; mean < 24*time.Second || mean > 26*time.Second {
		t.Fatalf("pacer windows average %v, want 25 s (supply Slack × Demand)", mean)
	}
}

// Attack: an edge forges its group's reply to outweigh or poison the round: a weight above its
// devices' largest (count × maxWeight), an infinite unclipped count, a count below the minimum
// group (a sum of one device: its update). The coordinator drops that group; the honest group
// alone makes the round.
func TestAttackEdgeForgesGroupSum(t *testing.T) {
	c := &Coordinator{cfg: CoordinatorConfig{MinGroup: 2}, rounds: map[int]*roundPlan{}, needed: map[int]int{}}
	for i := range 4 {
		c.snapshot = append(c.snapshot, device{edge: "a", id: int64(10 + i)})
	}
	c.plan(1, []fl.ClientID{0, 1, 2, 3})
	srv, err := (&Grouped{Coord: c, Inner: secAggForTest(t)}).NewServer(1, []fl.ClientID{0, 1, 2, 3}, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	msgs, _, err := srv.Next()
	if err != nil || len(msgs) != 2 {
		t.Fatalf("%d group requests, %v", len(msgs), err)
	}
	var leaders []fl.ClientID
	for l := range msgs {
		leaders = append(leaders, l)
	}
	reply := func(w, unclipped float64, n int64) []byte {
		b, _ := proto.Marshal(&tierv1.SumGroupReply{Sum: encodeFloats64([]float64{1, 1}), Weight: w, Unclipped: unclipped, Count: n})
		return b
	}
	for name, bad := range map[string][]byte{
		"weight above 2 devices × 3": reply(1e6, 0, 2),
		"infinite unclipped":         reply(4, math.Inf(1), 2),
		"one device's update":        reply(3, 1, 1),
		"negative count":             reply(3, 1, -1),
	} {
		if err := srv.Receive(leaders[0], bad); err == nil {
			t.Fatalf("%s: accepted", name)
		}
	}
	srv.Drop(leaders[0])
	if err := srv.Receive(leaders[1], reply(6, 2, 2)); err != nil {
		t.Fatal(err)
	}
	res, err := srv.Result()
	if err != nil || res.Count != 2 || res.Weight != 6 {
		t.Fatalf("result %+v, %v: want the honest group alone", res, err)
	}
}

// Attack (on the coordinator's side of the floor): of a secure group of two, one device's fit
// failed; a secure sum of the other alone would hand the coordinator that device's update. The
// group is left out: no request is sent for it.
func TestAttackGroupOfOneHolderNotSummed(t *testing.T) {
	c := &Coordinator{cfg: CoordinatorConfig{MinGroup: 2}, rounds: map[int]*roundPlan{}, needed: map[int]int{}}
	for i := range 4 {
		c.snapshot = append(c.snapshot, device{edge: "a", id: int64(10 + i)})
	}
	c.plan(1, []fl.ClientID{0, 1, 2, 3}) // groups {0, 1} and {2, 3}
	srv, err := (&Grouped{Coord: c, Inner: secAggForTest(t)}).NewServer(1, []fl.ClientID{0, 1, 2}, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	msgs, _, err := srv.Next()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("%d group requests, %v: want only the group of two holders", len(msgs), err)
	}
	for _, m := range msgs {
		var req tierv1.SumGroupRequest
		if err := proto.Unmarshal(m, &req); err != nil || len(req.GetHolders()) != 2 {
			t.Fatalf("request %v, %v", &req, err)
		}
	}
}

func secAggForTest(t *testing.T) fl.SecureSum {
	t.Helper()
	params, err := securesum.Spec{Bits: 20, ClipRange: 1, MaxDropout: 0.1, MaxCorrupt: 0.1, RunID: []byte("0123456789abcdef")}.Wire()
	if err != nil {
		t.Fatal(err)
	}
	s, err := securesum.FromWire("secagg", params)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
