package secagg

import (
	"errors"
	"math"
	mrand "math/rand/v2"
	"strings"
	"testing"
)

// Regression tests for attacks by a server or a client that does not follow the protocol
// (issue "Privacy that holds when the server does not behave"). Each mounts the attack and
// checks that it now fails; each succeeded before the fix.

// TestAttackReplayAcrossRuns: runs restart at round 1, so two runs reach the same round number
// with the same PKI keys. A malicious server that learnt a client's masking secret key in run A
// (the client dropped after sharing its keys, so the server reconstructed that key, as the
// protocol intends) replays the client's signed AdvertiseKeys of run A in run B: neighbours
// that accepted it would mask against a key the server knows, and their pairwise masks with
// that client would no longer hide their inputs. Survivor-set signatures of run A could likewise
// be passed off in run B. The run id bound into every signed transcript makes each replay fail,
// at the server and at the clients.
func TestAttackReplayAcrossRuns(t *testing.T) {
	const n = 6
	runA, runB := [16]byte{'r', 'u', 'n', ' ', 'A'}, [16]byte{'r', 'u', 'n', ' ', 'B'}
	a := newRunCluster(t, n, true, runA, 9)
	keyListsA, adsA := a.start(t)
	sharesA, _ := a.step(t, keyListsA)
	consistencyA, _ := a.step(t, sharesA)
	_, sigsA := a.step(t, consistencyA) // every survivor signed U3 = all clients in run A
	advertA, err := decode(adsA[1])
	if err != nil {
		t.Fatal(err)
	}

	// Run B, same round number, same signing keys, fresh client randomness.
	b := newRunCluster(t, n, true, runB, 10)
	if b.cfg.Round != a.cfg.Round {
		t.Fatal("the runs must reach the same round for the replay to be possible")
	}
	adsB := make([][]byte, n)
	for id, cl := range b.clients {
		if adsB[id], err = cl.Start(); err != nil {
			t.Fatal(err)
		}
	}
	// 1. The server is handed client 1's AdvertiseKeys of run A.
	if err := b.srv.Receive(1, adsA[1]); !errors.Is(err, ErrInvalid) {
		t.Fatalf("run A's signed AdvertiseKeys accepted by run B's server: %v", err)
	}
	for id, m := range adsB {
		if err := b.srv.Receive(ClientID(id), m); err != nil {
			t.Fatal(err)
		}
	}
	keyListsB, err := b.srv.Advance()
	if err != nil {
		t.Fatal(err)
	}
	// 2. A malicious server substitutes client 1's keys of run A (with its valid run-A
	// signature) in the key list it sends client 0.
	list, err := decode(keyListsB[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	for i := range list.keys {
		if list.keys[i].id == 1 {
			list.keys[i].channel, list.keys[i].msk, list.keys[i].sig = advertA.channel, advertA.msk, advertA.sig
		}
	}
	if _, err := b.clients[0].Handle(list.encode()); !errors.Is(err, ErrAborted) || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("client accepted keys signed in another run: %v", err)
	}

	// 3. Survivor-set signatures of run A, replayed in run B (a fresh run B: client 0 above left
	// the round).
	b = newRunCluster(t, n, true, runB, 10)
	keyListsB, _ = b.start(t)
	sharesB, _ := b.step(t, keyListsB)
	consistencyB, _ := b.step(t, sharesB)
	if err := b.srv.Receive(2, sigsA[2]); !errors.Is(err, ErrInvalid) {
		t.Fatalf("run A's signature of the survivor set accepted by run B's server: %v", err)
	}
	var sigs []sigEntry
	for id := range uint32(n) {
		m, err := decode(sigsA[id])
		if err != nil {
			t.Fatal(err)
		}
		sigs = append(sigs, sigEntry{id: id, sig: m.sig})
	}
	for _, o := range consistencyB {
		if o.To != 0 {
			continue
		}
		if _, err := b.clients[0].Handle(o.Data); err != nil { // client 0 signs run B's U3
			t.Fatal(err)
		}
	}
	all := []uint32{0, 1, 2, 3, 4, 5}
	forged := &message{Header: Header{Type: MsgUnmaskRequest, Round: b.cfg.Round, Sender: ServerID, Recipient: 0},
		ids: all, hasSigs: true, sigs: sigs}
	if _, err := b.clients[0].Handle(forged.encode()); !errors.Is(err, ErrAborted) || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("client accepted survivor-set signatures of another run: %v", err)
	}
}

// shiftMasked adds delta (mod 2^k) to entry i of a MaskedInput message, as a client that does
// not follow the protocol can: it changes nothing else, and the masks still cancel.
func shiftMasked(t *testing.T, data []byte, i int, delta uint32) []byte {
	t.Helper()
	m, err := decode(data)
	if err != nil || m.Type != MsgMaskedInput {
		t.Fatalf("not a masked input: %v", err)
	}
	vals := make([]uint32, m.entries)
	addPacked(vals, m.packed, int(m.ringBits))
	vals[i] += delta
	packRing(m.packed, vals, int(m.ringBits))
	return m.encode()
}

// TestAttackRingWrapRefused: a client adds a constant to one entry of its masked input. The
// masks cancel whatever it sends, so the unmasked sum moves by that constant and can wrap
// around Z_{2^k} (which holds up to 2^k − 1 ≥ n·(2^b − 1)); before the fix the server released
// a sum no honest inputs add up to (here, an entry beyond the six inputs' largest sum). Now the
// server abandons the round, naming it, and releases nothing.
func TestAttackRingWrapRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		entry int
		delta uint32 // honest sums: ≈ 6·127.5 per coordinate (zero inputs), 6·255 for the weight; the ring holds 2^11
	}{{"coordinate", 3, 1024}, {"weight", 8, 300}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newSmallCluster(t, 6, false)
			keyLists, _ := c.start(t)
			shares, _ := c.step(t, keyLists)
			for _, o := range shares {
				r, err := c.clients[o.To].Handle(o.Data)
				if err != nil {
					t.Fatal(err)
				}
				if o.To == 2 {
					r = shiftMasked(t, r, tc.entry, tc.delta)
				}
				if err := c.srv.Receive(o.To, r); err != nil {
					t.Fatalf("a shifted masked input is indistinguishable from any other, yet: %v", err)
				}
			}
			unmask, err := c.srv.Advance()
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range unmask {
				r, err := c.clients[o.To].Handle(o.Data)
				if err != nil {
					t.Fatal(err)
				}
				if err := c.srv.Receive(o.To, r); err != nil {
					t.Fatal(err)
				}
			}
			_, err = c.srv.Advance()
			if !errors.Is(err, ErrAbandoned) || !strings.Contains(err.Error(), "round 4") || !strings.Contains(err.Error(), "out-of-range") {
				res, _ := c.srv.Result()
				t.Fatalf("shifted sum not refused: err = %v, released %+v", err, res)
			}
			if res, err := c.srv.Result(); err == nil {
				t.Fatalf("a result was released: %+v", res)
			}
		})
	}
}

// FeasibleSum accepts the extremes of honest sums and refuses one step beyond.
func TestFeasibleSumRange(t *testing.T) {
	cfg := Config{Round: 1, Clients: 5, Dim: 3, Bits: 4, ClipRange: 1, MaxWeight: 1,
		Graph: GraphComplete, Degree: 4, Threshold: 3}
	if err := FeasibleSum(&cfg, []uint32{0, 45, 45, 45}, 3); err != nil {
		t.Fatal(err)
	}
	if err := FeasibleSum(&cfg, []uint32{0, 45, 46, 45}, 3); err == nil || !strings.Contains(err.Error(), "entry 2") {
		t.Fatalf("entry beyond 3·15 accepted: %v", err)
	}
	if err := FeasibleSum(&cfg, []uint32{0, 45, 45, 46}, 3); err == nil || !strings.Contains(err.Error(), "weight") {
		t.Fatalf("weight beyond 3·15 accepted: %v", err)
	}
}

// AssessGraph agrees with PlanGraph: what PlanGraph returns is secure, and its exposure figure
// for a weak forced degree matches a simulation of random Harary graphs with corrupt clients.
func TestAssessGraph(t *testing.T) {
	for _, c := range []struct {
		n         int
		d, g      float64
		kind      GraphKind
		malicious bool
	}{{1000, 0.1, 0.05, GraphHarary, false}, {1000, 0.1, 0.05, GraphHarary, true}, {500, 0.2, 0.1, GraphHarary, false},
		{100, 0.1, 0.1, GraphComplete, false}, {100, 0.1, 0.1, GraphComplete, true}, {50, 0.3, 0.1, GraphHarary, false}} {
		k, th, err := PlanGraph(c.n, c.d, c.g, c.kind, c.malicious)
		if err != nil {
			t.Fatal(err)
		}
		r, err := AssessGraph(c.n, k, th, c.d, c.g, c.kind, c.malicious)
		if err != nil || !r.Secure() || r.SecurityBits < StatisticalSecurity {
			t.Fatalf("%+v: PlanGraph's k=%d t=%d assessed %v (%v)", c, k, th, r, err)
		}
		if c.kind == GraphHarary && k < c.n-1 && k > 2 {
			// The next smaller degree failed PlanGraph: AssessGraph must not call it secure.
			if t2, err := PlanThreshold(c.n, k-2, c.d, c.kind); err == nil {
				if r2, _ := AssessGraph(c.n, k-2, t2, c.d, c.g, c.kind, c.malicious); r2.Secure() {
					t.Fatalf("%+v: degree %d secure, but PlanGraph chose %d", c, k-2, k)
				}
			}
		}
	}
	if _, err := AssessGraph(10, 4, 5, 0.1, 0.1, GraphHarary, false); err == nil {
		t.Fatal("threshold above the degree accepted")
	}

	// The example: n = 1000, forced k = 20 gives t = 3 at 10% dropout, and at 10%
	// corruption about a third of the clients have ≥ 3 corrupt neighbours.
	const n, k = 1000, 20
	th, err := PlanThreshold(n, k, 0.1, GraphHarary)
	if err != nil || th != 3 {
		t.Fatalf("threshold %d (%v), want 3", th, err)
	}
	r, err := AssessGraph(n, k, th, 0.1, 0.1, GraphHarary, false)
	if err != nil || r.Secure() || r.Exposed < 0.3 || r.Exposed > 0.35 {
		t.Fatalf("k=20: %v (%v)", r, err)
	}
	exposed, total := 0, 0
	rng := mrand.New(mrand.NewPCG(3, 4))
	for trial := range 20 {
		cfg := Config{Clients: n, Degree: k, Graph: GraphHarary, GraphSeed: [32]byte{byte(trial), 7}}
		g := newGraph(&cfg)
		corrupt := make([]bool, n)
		for _, u := range rng.Perm(n)[:r.Corrupt] {
			corrupt[u] = true
		}
		for u := range uint32(n) {
			count := 0
			for _, v := range g.neighbours(u) {
				if corrupt[v] {
					count++
				}
			}
			total++
			if count >= th {
				exposed++
			}
		}
	}
	if got := float64(exposed) / float64(total); math.Abs(got-r.Exposed) > 0.02 {
		t.Fatalf("simulated fraction exposed %.3f, AssessGraph says %.3f", got, r.Exposed)
	}
}
