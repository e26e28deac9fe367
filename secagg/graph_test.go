package secagg

import (
	"math"
	"testing"
)

func TestHararyGraphRegularSymmetric(t *testing.T) {
	for _, c := range []struct{ n, k int }{{10, 2}, {41, 14}, {100, 14}, {1000, 120}} {
		cfg := Config{Clients: c.n, Degree: c.k, Graph: GraphHarary, GraphSeed: [32]byte{5}}
		g := newGraph(&cfg)
		adj := map[[2]uint32]bool{}
		for u := range uint32(c.n) {
			nb := g.neighbours(u)
			if len(nb) != c.k {
				t.Fatalf("n=%d k=%d: client %d has %d neighbours", c.n, c.k, u, len(nb))
			}
			for i, v := range nb {
				if v == u || (i > 0 && nb[i-1] >= v) {
					t.Fatalf("client %d: neighbours %v not sorted, distinct, without self", u, nb)
				}
				if !g.isNeighbour(u, v) {
					t.Fatalf("isNeighbour(%d, %d) false for a listed neighbour", u, v)
				}
				adj[[2]uint32{u, v}] = true
			}
		}
		for e := range adj {
			if !adj[[2]uint32{e[1], e[0]}] {
				t.Fatalf("edge %v not symmetric", e)
			}
		}
		// Same seed, same graph; another seed, another graph.
		g2 := newGraph(&cfg)
		cfg.GraphSeed[0]++
		g3 := newGraph(&cfg)
		same, differ := true, false
		for u := range uint32(c.n) {
			a, b, d := g.neighbours(u), g2.neighbours(u), g3.neighbours(u)
			for i := range a {
				same = same && a[i] == b[i]
				differ = differ || a[i] != d[i]
			}
		}
		if !same || !differ {
			t.Fatalf("n=%d: graph not a deterministic function of the seed (same=%v differ=%v)", c.n, same, differ)
		}
	}
}

func TestPlanGraph(t *testing.T) {
	// Complete graph: worst case.
	k, th, err := PlanGraph(500, 0.1, 0.05, GraphComplete, false)
	if err != nil || k != 499 || th != 449 {
		t.Fatalf("complete 500: k=%d t=%d err=%v", k, th, err)
	}
	if _, _, err := PlanGraph(30, 0.5, 0.3, GraphComplete, true); err == nil {
		t.Fatal("malicious 50% dropout with 30% corruption accepted")
	}
	for _, c := range []struct {
		n          int
		drop, corr float64
		malicious  bool
	}{{1000, 0.1, 0.05, false}, {1000, 0.1, 0.05, true}, {10000, 0.05, 0.05, false}, {500, 0.3, 0.1, false}} {
		k, th, err := PlanGraph(c.n, c.drop, c.corr, GraphHarary, c.malicious)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("n=%d dropout=%v corrupt=%v malicious=%v: degree %d threshold %d", c.n, c.drop, c.corr, c.malicious, k, th)
		if k >= c.n-1 {
			continue // fell back to the complete graph
		}
		if k%2 != 0 || th < 1 || th > k {
			t.Fatalf("degree %d threshold %d", k, th)
		}
		budget := logBudget(c.n)
		if p := hypergeomLogTail(c.n-1, int(c.drop*float64(c.n)), k, k-th+1); p > budget {
			t.Fatalf("P[fewer than t survivors] = e^%.1f > 2^-40/n", p)
		}
		cMin := th
		if c.malicious {
			cMin = 2*th - k
		}
		if p := hypergeomLogTail(c.n-1, int(c.corr*float64(c.n)), k, cMin); p > budget {
			t.Fatalf("P[corrupt neighbours reach the threshold] = e^%.1f > 2^-40/n", p)
		}
		if c.n >= 1000 && k > c.n/2 {
			t.Fatalf("n=%d: degree %d is not logarithmic-ish", c.n, k)
		}
	}
}

func TestHypergeomTail(t *testing.T) {
	// Population 10 with 3 marked, 4 draws: P[X ≥ 2] = (C(3,2)C(7,2) + C(3,3)C(7,1)) / C(10,4) = 70/210.
	if got := math.Exp(hypergeomLogTail(10, 3, 4, 2)); math.Abs(got-70.0/210) > 1e-12 {
		t.Fatalf("tail = %v, want %v", got, 70.0/210)
	}
	if got := hypergeomLogTail(10, 3, 4, 4); !math.IsInf(got, -1) {
		t.Fatalf("impossible tail = %v", got)
	}
}
