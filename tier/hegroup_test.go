package tier

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"shoal/fl"
	"shoal/he"
	"shoal/internal/testsupport"
)

// heBound is the largest error of a coordinate of the new model in these tests: each group's
// decrypted sum and weight are each within he.Params.MaxAbsError(T) (2.4·10⁻⁶ for T = 2) of the
// exact ones, the coordinator divides by a total weight of ≥ 6, and the model is float32 (the
// updates are ~0.05: half an ulp is 4·10⁻⁹).
func heBound(groups, threshold int) float64 {
	return 2 * float64(groups) * he.DefaultParams().MaxAbsError(threshold)
}

// Threshold HE per group: each edge's group of four runs its own key ceremony among three of
// its devices, the devices encrypt under the group's key, the committee decrypts the group's
// sum, and the master aggregation of the two group sums is the FedAvg of every device's update
// within CKKS precision.
func TestHEGroupsEqualDirectAggregate(t *testing.T) {
	p := startPopulationWith(t, "he", populationOptions{heCommittee: 3, heThreshold: 2, minGroup: 4})
	e := testsupport.Engine(t, p.coord, 1)
	e.SecureSum = &Grouped{Inner: p.inner, Coord: p.coord}
	e.Config.StageTimeout = time.Minute
	for round, global := range [][]float32{{0.1, -0.2, 0.3, 0, 0.05, 0.4, -0.1}, {0, 0.5, -0.5, 0.25, 0, 0, 1}} {
		want := testsupport.FedAvg(global, round+1, p.weight)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		rep, err := e.RunRound(ctx, round+1, global)
		cancel()
		if err != nil || rep.Abandoned != "" || rep.Participants != 8 {
			t.Fatalf("round %d: %+v, %v", round+1, rep, err)
		}
		if g := p.coord.Groups(round + 1); len(g) != 2 || g[0].Size != 4 {
			t.Fatalf("groups %+v, want one of four devices per edge", g)
		}
		testsupport.CloseTo(t, global, want, heBound(2, 2))
	}
	if d := e.SecureSum.Describe(); !strings.Contains(d, "its own key ceremony") {
		t.Fatalf("description %q does not say each group runs its own ceremony", d)
	}
}

// A committee member crashes mid-round.
//
// After the key ceremony (as the upload request arrives): with K = 4 and T = 2 the approval
// quorum ⌈(K+T)/2⌉ = 3 survives one crash, and the group decrypts the sum of its other three
// devices with two members' shares. (A crash of one of the T members chosen to decrypt, after
// approving, loses the group: each member releases one share per round.)
//
// During the key ceremony, which needs all K members: with K = 3 the edge seats another
// committee among the three devices left and the group decrypts their sum; with K = 4 three are
// too few, the group is lost, and the round goes on with the other edge's group.
func TestHEGroupCommitteeMemberCrashes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		k     int
		stage int
		lost  bool // edge a's group is lost
	}{
		{"after-ceremony", 4, 3, false},
		{"during-ceremony-reseated", 3, 1, false},
		{"during-ceremony-lost", 4, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			member := map[string]bool{}
			crashed := ""
			crash := func(dev, kind string, stage int) bool {
				mu.Lock()
				defer mu.Unlock()
				if kind == "exchange" && stage == 0 {
					member[dev] = true // asked to join the first ceremony: on its committee
				}
				// The first committee member of edge a to reach the stage dies there.
				if crashed == "" && kind == "exchange" && stage == tc.stage && member[dev] && strings.HasPrefix(dev, "a") {
					crashed = dev
					return true
				}
				return false
			}
			// A minimum group of 3: each edge's four devices form one group, whose sum may then
			// cover the three survivors (a secure group's sum must cover the minimum).
			p := startPopulationWith(t, "he", populationOptions{heCommittee: tc.k, heThreshold: 2, minGroup: 3, crash: crash})
			e := testsupport.Engine(t, p.coord, 1)
			e.SecureSum = &Grouped{Inner: p.inner, Coord: p.coord}
			e.Config.StageTimeout = time.Minute
			initial := []float32{0.1, -0.2, 0.3, 0, 0.05, 0.4, -0.1}
			global := slices.Clone(initial) // the round updates it in place
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rep, err := e.RunRound(ctx, 1, global)
			if err != nil || rep.Abandoned != "" {
				t.Fatalf("round: %+v, %v", rep, err)
			}
			mu.Lock()
			who := crashed
			mu.Unlock()
			if who == "" {
				t.Fatal("no committee member crashed")
			}
			t.Logf("committee member %s crashed at stage %d", who, tc.stage)
			dead := fl.ClientID(who[1] - '0') // device aK is Trainer K (edge b's are 10 + K)
			kept := map[fl.ClientID]int{}
			for id, n := range p.weight {
				if id != dead && (!tc.lost || id >= 10) {
					kept[id] = n
				}
			}
			testsupport.CloseTo(t, global, testsupport.FedAvg(initial, 1, kept), heBound(2, 2))
		})
	}
}

// The committee is drawn uniformly from the group (crypto/rand), not the lowest ids.
func TestDrawCommitteeUniform(t *testing.T) {
	holders := []fl.ClientID{3, 5, 8, 13, 21, 34}
	const draws, k = 6000, 2
	counts := map[fl.ClientID]int{}
	for range draws {
		c, err := drawCommittee(holders, k)
		if err != nil {
			t.Fatal(err)
		}
		if len(c) != k || c[0] == c[1] {
			t.Fatalf("committee %v", c)
		}
		for _, id := range c {
			counts[id]++
		}
	}
	want := float64(draws*k) / float64(len(holders))
	chi := 0.0
	for _, id := range holders {
		d := float64(counts[id]) - want
		chi += d * d / want
	}
	// 5 degrees of freedom: the 99.9 % quantile is 20.5.
	if chi > 20.5 {
		t.Fatalf("χ² = %.1f: not uniform (%v)", chi, counts)
	}
}
