package secagg

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"math"
	mrand "math/rand/v2"
	"strings"
	"testing"
)

// smallCluster is a round driven by hand, for tests that tamper with messages.
type smallCluster struct {
	cfg     Config
	srv     *Server
	clients []*Client
}

func newSmallCluster(t *testing.T, n int, malicious bool) *smallCluster {
	t.Helper()
	return newRunCluster(t, n, malicious, [16]byte{}, 9)
}

// newRunCluster is newSmallCluster in the run with the given id, the clients' randomness from
// seed (the Ed25519 keys are the same in every run: one PKI).
func newRunCluster(t *testing.T, n int, malicious bool, run [16]byte, seed uint64) *smallCluster {
	t.Helper()
	k, th, err := PlanGraph(n, 0.2, 0, GraphComplete, malicious)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Round: 4, Clients: n, Dim: 8, Bits: 8, ClipRange: 1, MaxWeight: 1, Graph: GraphComplete, Degree: k, Threshold: th,
		RunID: run}
	var sks []ed25519.PrivateKey
	if malicious {
		cfg.VerifyKeys = make([]ed25519.PublicKey, n)
		for i := range n {
			sks = append(sks, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(i + 1)}, 32)))
			cfg.VerifyKeys[i] = sks[i].Public().(ed25519.PublicKey)
		}
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &smallCluster{cfg: cfg, srv: srv}
	for id := range uint32(n) {
		var opts []ClientOption
		if malicious {
			opts = append(opts, WithSigningKey(sks[id]))
		}
		cl, err := NewClient(cfg, id, seeded(seed)(id), opts...)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.SetInput(make([]float32, cfg.Dim), 1); err != nil {
			t.Fatal(err)
		}
		c.clients = append(c.clients, cl)
	}
	return c
}

// deliver hands the server's messages to the clients and their replies to the server, then
// advances; it returns the server's next messages and the replies it delivered.
func (c *smallCluster) step(t *testing.T, out []Outgoing) ([]Outgoing, map[ClientID][]byte) {
	t.Helper()
	replies := map[ClientID][]byte{}
	for _, o := range out {
		r, err := c.clients[o.To].Handle(o.Data)
		if err != nil {
			t.Fatalf("client %d: %v", o.To, err)
		}
		replies[o.To] = r
		if err := c.srv.Receive(o.To, r); err != nil {
			t.Fatalf("server: %v", err)
		}
	}
	next, err := c.srv.Advance()
	if err != nil {
		t.Fatal(err)
	}
	return next, replies
}

func (c *smallCluster) start(t *testing.T) ([]Outgoing, [][]byte) {
	t.Helper()
	var ads [][]byte
	for id, cl := range c.clients {
		m, err := cl.Start()
		if err != nil {
			t.Fatal(err)
		}
		ads = append(ads, m)
		if err := c.srv.Receive(ClientID(id), m); err != nil {
			t.Fatal(err)
		}
	}
	if !c.srv.Ready() {
		t.Fatal("server not ready after every client advertised")
	}
	out, err := c.srv.Advance()
	if err != nil {
		t.Fatal(err)
	}
	return out, ads
}

// Stale, replayed, duplicated, misaddressed and out-of-stage messages are rejected and change
// nothing: the round still completes.
func TestRejectsStaleReplayedDuplicateOutOfStage(t *testing.T) {
	c := newSmallCluster(t, 6, false)
	keyLists, ads := c.start(t)

	if err := c.srv.Receive(0, ads[0]); !errors.Is(err, ErrOutOfStage) {
		t.Fatalf("replayed AdvertiseKeys after the stage: %v", err)
	}
	other := c.cfg
	other.Round = 3
	oldClient, _ := NewClient(other, 0, seeded(1)(0))
	stale, _ := oldClient.Start()
	if err := c.srv.Receive(0, stale); !errors.Is(err, ErrWrongRound) {
		t.Fatalf("message of round 3 in round 4: %v", err)
	}
	// A key list addressed to client 1 delivered to client 0.
	misaddressed := bytes.Clone(keyLists[0].Data)
	binary.BigEndian.PutUint32(misaddressed[14:], 1)
	if _, err := c.clients[0].Handle(misaddressed); !errors.Is(err, ErrWrongParty) {
		t.Fatalf("misaddressed key list: %v", err)
	}
	shares, replies := c.step(t, keyLists)
	if _, err := c.clients[0].Handle(keyLists[0].Data); !errors.Is(err, ErrOutOfStage) {
		t.Fatalf("replayed key list: %v", err)
	}
	if err := c.srv.Receive(2, replies[1]); !errors.Is(err, ErrWrongParty) {
		t.Fatalf("client 2 sending client 1's message: %v", err)
	}
	// Deliver the shares; send one masked input twice.
	masked := map[ClientID][]byte{}
	for _, o := range shares {
		r, err := c.clients[o.To].Handle(o.Data)
		if err != nil {
			t.Fatal(err)
		}
		masked[o.To] = r
		if err := c.srv.Receive(o.To, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.srv.Receive(3, masked[3]); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("duplicate masked input: %v", err)
	}
	if err := c.srv.Receive(3, replies[3]); !errors.Is(err, ErrOutOfStage) {
		t.Fatalf("ShareKeys during the masked stage: %v", err)
	}
	unmask, err := c.srv.Advance()
	if err != nil {
		t.Fatal(err)
	}
	c.step(t, unmask)
	res, err := c.srv.Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Survivors) != 6 {
		t.Fatalf("%d survivors", len(res.Survivors))
	}
	// Zero inputs: every survivor's entry is the midpoint level or one above it.
	for _, v := range res.Ring[:c.cfg.Dim] {
		if v < 6*127 || v > 6*128 {
			t.Fatalf("ring sum %d out of the range of six encoded zeros", v)
		}
	}
}

// An honest client reveals exactly one share per neighbour and never a second one.
func TestClientRefusesBothShares(t *testing.T) {
	c := newSmallCluster(t, 6, false)
	keyLists, _ := c.start(t)
	shares, _ := c.step(t, keyLists)
	// Client 5 "drops" after sharing: its masked input is never delivered.
	var unmask []Outgoing
	for _, o := range shares {
		r, err := c.clients[o.To].Handle(o.Data)
		if err != nil {
			t.Fatal(err)
		}
		if o.To != 5 {
			if err := c.srv.Receive(o.To, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	unmask, err := c.srv.Advance()
	if err != nil {
		t.Fatal(err)
	}
	req := unmask[0] // to client 0; U3 = {0..4}
	reply, err := c.clients[req.To].Handle(req.Data)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decode(reply)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.shares) != 5 {
		t.Fatalf("%d shares revealed, want one for each of 5 neighbours", len(m.shares))
	}
	for _, s := range m.shares {
		want := shareSelfMask
		if s.about == 5 {
			want = shareMaskKey
		}
		if s.kind != want {
			t.Fatalf("share about %d of kind %d, want %d", s.about, s.kind, want)
		}
	}
	// A second request claiming client 1 dropped (to get its masking key too) is refused.
	forged := &message{Header: Header{Type: MsgUnmaskRequest, Round: c.cfg.Round, Sender: ServerID, Recipient: req.To}, ids: []uint32{0, 2, 3, 4}}
	if r, err := c.clients[req.To].Handle(forged.encode()); !errors.Is(err, ErrOutOfStage) || r != nil {
		t.Fatalf("second unmask request: reply %d bytes, err %v", len(r), err)
	}
	// A request naming fewer survivors than the threshold, to a fresh client, is refused too.
	few := &message{Header: Header{Type: MsgUnmaskRequest, Round: c.cfg.Round, Sender: ServerID, Recipient: 1}, ids: []uint32{1}}
	if _, err := c.clients[1].Handle(few.encode()); !errors.Is(err, ErrAborted) {
		t.Fatalf("unmask request with one survivor: %v", err)
	}
}

// With the malicious-server variant, a server that shows two clients different survivor sets
// (to collect b_u from one and the masking key of u from the other) is caught.
func TestMaliciousServerEquivocationDetected(t *testing.T) {
	c := newSmallCluster(t, 6, true)
	keyLists, _ := c.start(t)
	shares, _ := c.step(t, keyLists)
	_, _ = c.step(t, shares) // every masked input delivered; server now asks for signatures on U3
	all := []uint32{0, 1, 2, 3, 4, 5}
	lie := []uint32{0, 1, 2, 3, 4} // tells client 0 that client 5 dropped
	sig := func(id uint32, ids []uint32) sigEntry {
		return sigEntry{id: id, sig: ed25519.Sign(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(id + 1)}, 32)), consistencyTranscript(c.cfg.session(), ids))}
	}
	// Client 0 signs the lie; the server forwards it with signatures it cannot have from
	// honest clients for that set: it only has their signatures of the true set.
	req := &message{Header: Header{Type: MsgConsistencyRequest, Round: c.cfg.Round, Sender: ServerID, Recipient: 0}, ids: lie}
	fresh := newSmallCluster(t, 6, true) // same keys and randomness: a client in the same state
	kl, _ := fresh.start(t)
	sh, _ := fresh.step(t, kl)
	for _, o := range sh {
		if _, err := fresh.clients[o.To].Handle(o.Data); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fresh.clients[0].Handle(req.encode()); err != nil {
		t.Fatal(err)
	}
	var sigs []sigEntry
	for _, id := range lie {
		sigs = append(sigs, sig(id, all)) // honest clients signed the true set
	}
	unmask := &message{Header: Header{Type: MsgUnmaskRequest, Round: c.cfg.Round, Sender: ServerID, Recipient: 0},
		ids: lie, hasSigs: true, sigs: sigs}
	if _, err := fresh.clients[0].Handle(unmask.encode()); !errors.Is(err, ErrAborted) {
		t.Fatalf("client unmasked on a survivor set others did not sign: %v", err)
	}
}

// Property: over random dropout patterns, both graphs, the server never receives shares of
// both b_u and the masking key of the same client u.
func TestServerNeverHoldsBothShares(t *testing.T) {
	stages := []Stage{StageAdvertise, StageShare, StageMasked, StageUnmask}
	for trial := range 12 {
		r := mrand.New(mrand.NewPCG(uint64(trial), 77))
		graph := GraphComplete
		if trial%2 == 1 {
			graph = GraphHarary
		}
		n := 30 + r.IntN(20)
		cfg := testConfig(t, n, 16, graph, 0.25)
		drop := map[ClientID]Stage{}
		for _, id := range r.Perm(n)[:r.IntN(n/4+1)] {
			drop[ClientID(id)] = stages[r.IntN(len(stages))]
		}
		kinds := map[uint32]byte{}
		tap := func(from, to uint32, data []byte) {
			h, _ := Peek(data)
			if h.Type != MsgUnmaskShares {
				return
			}
			m, err := decode(data)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range m.shares {
				if k, ok := kinds[s.about]; ok && k != s.kind {
					t.Fatalf("trial %d: server received both kinds of share of client %d", trial, s.about)
				}
				kinds[s.about] = s.kind
			}
		}
		rep, err := RunRound(RoundSpec{Config: cfg, Input: inputs(cfg.Dim), Drop: drop, Rand: seeded(uint64(trial)), Tap: tap, Check: true})
		if err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		if !rep.Correct {
			t.Fatalf("trial %d: wrong sum", trial)
		}
	}
}

// Property: a single masked input is uniform in Z_{2^k} whatever the input: chi-square over all
// 2^k values for a constant input at either end of the range.
func TestMaskedInputUniform(t *testing.T) {
	for _, value := range []float32{-1, 1} {
		cfg := Config{Round: 1, Clients: 3, Dim: 60_000, Bits: 6, ClipRange: 1, MaxWeight: 1,
			Graph: GraphComplete, Degree: 2, Threshold: 2}
		k := cfg.RingBits() // 8
		var masked []byte
		tap := func(from, to uint32, data []byte) {
			if h, _ := Peek(data); h.Type == MsgMaskedInput && from == 0 {
				m, _ := decode(data)
				masked = m.packed
			}
		}
		in := func(ClientID) ([]float32, float64, error) {
			u := make([]float32, cfg.Dim)
			for i := range u {
				u[i] = value
			}
			return u, 1, nil
		}
		if _, err := RunRound(RoundSpec{Config: cfg, Input: in, Rand: seeded(uint64(value + 2)), Tap: tap}); err != nil {
			t.Fatal(err)
		}
		vals := make([]uint32, cfg.Dim+1)
		addPacked(vals, masked, k)
		bins := make([]float64, 1<<k)
		for _, v := range vals[:cfg.Dim] {
			bins[v]++
		}
		expect := float64(cfg.Dim) / float64(len(bins))
		chi2 := 0.0
		for _, o := range bins {
			chi2 += (o - expect) * (o - expect) / expect
		}
		// 255 degrees of freedom: mean 255, sd 22.6; 400 is beyond 6 sd. An unmasked constant
		// input would give chi2 ≈ 60,000·255.
		dof := float64(len(bins) - 1)
		if chi2 > dof+6*math.Sqrt(2*dof) {
			t.Fatalf("input %v: masked values not uniform: chi2 = %.0f with %v dof", value, chi2, dof)
		}
	}
}

func TestQuantisationUnbiasedAndClipped(t *testing.T) {
	cfg := Config{Round: 1, Clients: 4, Dim: 200_000, Bits: 4, ClipRange: 2, MaxWeight: 10,
		Graph: GraphComplete, Degree: 3, Threshold: 2}
	for _, x := range []float32{0.3, -1.77, 5, -9} {
		u := make([]float32, cfg.Dim)
		for i := range u {
			u[i] = x
		}
		enc, err := EncodeInput(&cfg, u, 3.3, mrand.NewChaCha8([32]byte{byte(x * 10)}))
		if err != nil {
			t.Fatal(err)
		}
		var sum uint64
		for _, v := range enc[:cfg.Dim] {
			if v > 15 {
				t.Fatalf("encoded value %d exceeds 4 bits", v)
			}
			sum += uint64(v)
		}
		step := 2 * cfg.ClipRange / 15
		mean := float64(sum)/float64(cfg.Dim)*step - cfg.ClipRange
		want := math.Max(-2, math.Min(2, float64(x)))
		// Stochastic rounding has sd ≤ step/2 per entry.
		if tol := 6 * step / 2 / math.Sqrt(float64(cfg.Dim)); math.Abs(mean-want) > tol {
			t.Fatalf("x=%v: mean of decoded %v, want %v ± %v", x, mean, want, tol)
		}
	}
	bad := make([]float32, cfg.Dim)
	bad[7] = float32(math.NaN())
	if _, err := EncodeInput(&cfg, bad, 1, mrand.NewChaCha8([32]byte{})); err == nil {
		t.Fatal("NaN accepted")
	}
	if _, err := EncodeInput(&cfg, bad[:5], 1, mrand.NewChaCha8([32]byte{})); err == nil {
		t.Fatal("wrong dimension accepted")
	}
	if _, err := EncodeInput(&cfg, make([]float32, cfg.Dim), math.Inf(1), mrand.NewChaCha8([32]byte{})); err == nil {
		t.Fatal("infinite weight accepted")
	}
}

// A client that reveals a corrupted share of a survivor's seed makes the server abandon the
// round with a clear error, instead of releasing a wrong sum; so does a seed that does not match
// the commitment its owner advertised.
func TestBadSeedShareDetected(t *testing.T) {
	for _, tamper := range []string{"share", "commitment"} {
		c := newSmallCluster(t, 6, false)
		keyLists, _ := c.start(t)
		shares, _ := c.step(t, keyLists)
		unmask, _ := c.step(t, shares)
		if tamper == "commitment" {
			c.srv.commits[2][0] ^= 1
		}
		for i, o := range unmask {
			r, err := c.clients[o.To].Handle(o.Data)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 && tamper == "share" {
				m, err := decode(r)
				if err != nil {
					t.Fatal(err)
				}
				m.shares[0].chunks[2] = fieldAdd(m.shares[0].chunks[2], 1)
				r = m.encode()
			}
			if err := c.srv.Receive(o.To, r); err != nil {
				t.Fatal(err)
			}
		}
		_, err := c.srv.Advance()
		if !errors.Is(err, ErrAbandoned) || !strings.Contains(err.Error(), tamper) {
			t.Fatalf("tampered %s: %v", tamper, err)
		}
		if _, err := c.srv.Result(); err == nil {
			t.Fatal("a result was released")
		}
	}
}
