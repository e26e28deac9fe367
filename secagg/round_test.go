package secagg

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"testing"
)

// seeded returns a deterministic randomness source for client id (tests only).
func seeded(seed uint64) func(ClientID) io.Reader {
	return func(id ClientID) io.Reader {
		var s [32]byte
		s[0], s[1], s[2] = byte(id), byte(id>>8), byte(seed)
		s[3] = byte(seed >> 8)
		return mrand.NewChaCha8(s)
	}
}

// inputs gives every client a deterministic update in [-1.2, 1.2] (some entries get clipped).
func inputs(dim int) func(ClientID) ([]float32, float64, error) {
	return func(id ClientID) ([]float32, float64, error) {
		r := mrand.New(mrand.NewPCG(uint64(id), 7))
		u := make([]float32, dim)
		for i := range u {
			u[i] = float32(2.4*r.Float64() - 1.2)
		}
		return u, float64(1 + id%50), nil
	}
}

func testConfig(t *testing.T, n, dim int, graph GraphKind, dropout float64) Config {
	t.Helper()
	k, th, err := PlanGraph(n, dropout, 0.05, graph, false)
	if err != nil {
		t.Fatal(err)
	}
	return Config{Round: 3, Clients: n, Dim: dim, Bits: 16, ClipRange: 1, MaxWeight: 100,
		Graph: graph, Degree: k, Threshold: th, GraphSeed: [32]byte{1, 2, 3}}
}

// dropSet drops `count` clients, chosen deterministically, at stage st.
func dropSet(n, count int, st Stage, seed uint64) map[ClientID]Stage {
	perm := mrand.New(mrand.NewPCG(seed, 1)).Perm(n)
	m := map[ClientID]Stage{}
	for _, p := range perm[:count] {
		m[ClientID(p)] = st
	}
	return m
}

// TestRoundExactUnderDropout is the scenario table: both graphs, dropouts at every stage up to
// the tolerated fraction, and the exact ring sum of the survivors must come out.
func TestRoundExactUnderDropout(t *testing.T) {
	type scenario struct {
		graph   GraphKind
		n       int
		dropout float64 // tolerated fraction; that many clients drop
		stages  []Stage // drops spread over these stages
	}
	all := []Stage{StageAdvertise, StageShare, StageMasked, StageUnmask}
	var table []scenario
	for _, g := range []GraphKind{GraphComplete, GraphHarary} {
		for _, st := range all {
			table = append(table, scenario{g, 40, 0.2, []Stage{st}})
		}
		table = append(table, scenario{g, 40, 0, nil})
		table = append(table, scenario{g, 60, 0.3, all})
	}
	for i, sc := range table {
		name := fmt.Sprintf("%v/n=%d/drop=%.0f%%/%v", sc.graph, sc.n, 100*sc.dropout, sc.stages)
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t, sc.n, 257, sc.graph, sc.dropout)
			drop := map[ClientID]Stage{}
			count := int(sc.dropout * float64(sc.n))
			for j, id := range mrand.New(mrand.NewPCG(uint64(i), 9)).Perm(sc.n)[:count] {
				drop[ClientID(id)] = sc.stages[j%len(sc.stages)]
			}
			rep, err := RunRound(RoundSpec{Config: cfg, Input: inputs(cfg.Dim), Drop: drop, Rand: seeded(uint64(i)), Check: true})
			if err != nil {
				t.Fatalf("degree %d threshold %d: %v", cfg.Degree, cfg.Threshold, err)
			}
			if !rep.Correct {
				t.Fatalf("unmasked sum differs from the plain sum of survivors")
			}
			wantSurvivors := sc.n
			for _, st := range drop {
				if st != StageUnmask { // clients leaving at unmasking still count
					wantSurvivors--
				}
			}
			if len(rep.Result.Survivors) != wantSurvivors {
				t.Fatalf("%d survivors, want %d", len(rep.Result.Survivors), wantSurvivors)
			}
			if len(rep.ClientErrors) != 0 {
				t.Fatalf("clients aborted: %v", rep.ClientErrors)
			}
			// The decoded sum must be close to the float sum (quantisation error only).
			in := inputs(cfg.Dim)
			want := make([]float64, cfg.Dim)
			wantW := 0.0
			for _, id := range rep.Result.Survivors {
				u, w, _ := in(id)
				for j, x := range u {
					want[j] += math.Max(-1, math.Min(1, float64(x)))
				}
				wantW += w
			}
			step := 2 / float64(1<<16-1)
			for j := range want {
				if d := math.Abs(rep.Result.Sum[j] - want[j]); d > step*float64(len(rep.Result.Survivors)) {
					t.Fatalf("entry %d: decoded %v, float sum %v", j, rep.Result.Sum[j], want[j])
				}
			}
			if d := math.Abs(rep.Result.Weight - wantW); d > 100*step*float64(len(rep.Result.Survivors)) {
				t.Fatalf("weight %v, want %v", rep.Result.Weight, wantW)
			}
		})
	}
}

func TestRoundMaliciousVariant(t *testing.T) {
	n := 30
	k, th, err := PlanGraph(n, 0.1, 0.1, GraphComplete, true)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Round: 9, Clients: n, Dim: 50, Bits: 12, ClipRange: 2, MaxWeight: 10, Graph: GraphComplete,
		Degree: k, Threshold: th, VerifyKeys: make([]ed25519.PublicKey, n)}
	sks := make([]ed25519.PrivateKey, n)
	for i := range sks {
		var seed [32]byte
		seed[0] = byte(i)
		sks[i] = ed25519.NewKeyFromSeed(seed[:])
		cfg.VerifyKeys[i] = sks[i].Public().(ed25519.PublicKey)
	}
	drop := map[ClientID]Stage{3: StageMasked, 7: StageConsistency, 11: StageUnmask}
	rep, err := RunRound(RoundSpec{Config: cfg, Input: inputs(cfg.Dim), Drop: drop, Rand: seeded(5), SigningKeys: sks, Check: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Correct || len(rep.ClientErrors) != 0 {
		t.Fatalf("correct=%v errors=%v", rep.Correct, rep.ClientErrors)
	}
}

// Below the threshold the round is abandoned with a clear error and no result.
func TestRoundAbandonedBelowThreshold(t *testing.T) {
	for _, st := range []Stage{StageAdvertise, StageShare, StageMasked, StageUnmask} {
		t.Run(st.String(), func(t *testing.T) {
			cfg := testConfig(t, 20, 16, GraphComplete, 0.2)
			drop := dropSet(20, 20-cfg.Threshold, st, 4) // one too many
			rep, err := RunRound(RoundSpec{Config: cfg, Input: inputs(cfg.Dim), Drop: drop, Rand: seeded(4), Check: true})
			if !errors.Is(err, ErrAbandoned) {
				t.Fatalf("err = %v, want ErrAbandoned", err)
			}
			if rep != nil && rep.Result != nil {
				t.Fatal("abandoned round released a result")
			}
			t.Log(err)
		})
	}
}
