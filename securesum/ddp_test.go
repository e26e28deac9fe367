package securesum

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"shoal/fl"
	"shoal/privacy"
	"shoal/secagg"
)

func ddpConfig(mech string, minClients int) *privacy.DDPConfig {
	return &privacy.DDPConfig{Mechanism: mech, Bits: 16, Clip: 1, NoiseMultiplier: 1, MinClients: minClients, Cohort: 12}
}

// TestSecAggDDPSumIsNoisedSum: over the SecAgg adapter with dropouts, the unmasked sum equals
// the plain sum of the survivors' clipped updates plus noise of the stated size, for both
// mechanisms, and holds exactly one noise share per survivor.
func TestSecAggDDPSumIsNoisedSum(t *testing.T) {
	const n, dim = 12, 1000
	rng := rand.New(rand.NewPCG(4, 5))
	inputs := map[fl.ClientID]fl.SumInput{}
	for i := range n {
		u := make([]float32, dim)
		for j := range u {
			u[j] = float32(rng.NormFloat64() * 0.01) // norm ≈ 0.32 < clip 1
		}
		inputs[fl.ClientID(10+i)] = fl.SumInput{Update: u, Weight: 1, Unclipped: 1}
	}
	for _, mech := range []string{privacy.MechanismSkellam, privacy.MechanismDDGauss} {
		p, err := New("secaggplus", Spec{Bits: 16, MaxDropout: 0.3, DDP: ddpConfig(mech, 8), Rand: seeded(9)})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(p.Describe(), "never sees an un-noised sum") {
			t.Fatalf("description does not state the protection: %s", p.Describe())
		}
		drop := map[fl.ClientID]int{10: 2, 11: 2} // before their masked inputs
		res, err := drive(t, p, 3, inputs, dim, drop)
		if err != nil {
			t.Fatal(err)
		}
		if res.Count != n-2 || res.Weight != n-2 || res.Unclipped != 0 {
			t.Fatalf("%s: count %d weight %v unclipped %v", mech, res.Count, res.Weight, res.Unclipped)
		}
		params, _ := ddpConfig(mech, 8).Params(dim)
		want := params.SumStd(res.Count)
		var s2 float64
		for j := range dim {
			var plain float64
			for id, in := range inputs {
				if _, gone := drop[id]; !gone {
					plain += float64(in.Update[j])
				}
			}
			d := res.Sum[j] - plain
			s2 += d * d
		}
		sd := math.Sqrt(s2 / dim)
		if sd < 0.9*want || sd > 1.1*want {
			t.Fatalf("%s: noise sd %v, want ≈ %v (10 shares of 1/8 of z·Δ2·γ)", mech, sd, want)
		}
	}
}

// TestSecAggDDPAbandonsBelowMinimumShares: a round whose survivors hold fewer noise shares than
// the noise is split into is abandoned, not released under-noised.
func TestSecAggDDPAbandonsBelowMinimumShares(t *testing.T) {
	inputs := map[fl.ClientID]fl.SumInput{}
	for i := range 10 {
		inputs[fl.ClientID(i)] = fl.SumInput{Update: []float32{0.1, -0.2, 0.3}, Weight: 1}
	}
	p, err := New("secagg", Spec{Bits: 16, MaxDropout: 0.3, DDP: ddpConfig(privacy.MechanismSkellam, 9), Rand: seeded(2)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = drive(t, p, 1, inputs, 3, map[fl.ClientID]int{0: 2, 1: 2})
	if !errors.Is(err, fl.ErrRoundAbandoned) || !strings.Contains(err.Error(), "noise shares") {
		t.Fatalf("8 survivors of a noise split in 9: %v", err)
	}
	few := map[fl.ClientID]fl.SumInput{1: inputs[1], 2: inputs[2]}
	if _, err := drive(t, p, 2, few, 3, nil); !errors.Is(err, fl.ErrRoundAbandoned) {
		t.Fatalf("a round of 2 clients for 9 shares: %v", err)
	}
	if _, err := New("he", Spec{Committee: 3, Threshold: 2, DDP: ddpConfig(privacy.MechanismSkellam, 2)}); err == nil {
		t.Fatal("threshold HE accepted distributed DP")
	}
	if _, err := New("secagg", Spec{Bits: 12, DDP: ddpConfig(privacy.MechanismSkellam, 2)}); err == nil {
		t.Fatal("ring bits and distributed-DP bits differ, accepted")
	}
}

// TestSecAggDDPClientPolicy: a client refuses a round whose noise multiplier, or whose split of
// the noise into shares, is below its own policy, and a round without distributed DP when it
// requires it; within its policy it takes part.
func TestSecAggDDPClientPolicy(t *testing.T) {
	setup := func(spec Spec) map[fl.ClientID][]byte {
		server, err := New("secagg", spec)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := server.NewServer(1, []fl.ClientID{1, 2, 3, 4}, 2, 1)
		if err != nil {
			t.Fatal(err)
		}
		msgs, _, err := srv.Next()
		if err != nil {
			t.Fatal(err)
		}
		return msgs
	}
	client := func(spec Spec, pol DDPPolicy) fl.SumClient {
		spec.Rand = nil
		wire, _ := spec.Wire()
		proto, err := FromWire("secagg", wire)
		if err != nil {
			t.Fatal(err)
		}
		if err := proto.(*SecAgg).RequireDDP(pol); err != nil {
			t.Fatal(err)
		}
		c, err := proto.NewClient(1, 1, fl.SumInput{Update: []float32{0.1, 0.2}, Weight: 1})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	weak := Spec{Bits: 16, MaxDropout: 0.3, DDP: &privacy.DDPConfig{Mechanism: privacy.MechanismSkellam, Bits: 16, Clip: 1, NoiseMultiplier: 0.5, MinClients: 3, Cohort: 4}}
	msgs := setup(weak)
	if _, err := client(weak, DDPPolicy{MinNoiseMultiplier: 0.8}).Handle(msgs[1]); !errors.Is(err, fl.ErrPolicy) {
		t.Fatalf("z = 0.5 against a client minimum of 0.8: %v", err)
	}
	if _, err := client(weak, DDPPolicy{MaxShares: 2}).Handle(msgs[1]); !errors.Is(err, fl.ErrPolicy) {
		t.Fatalf("noise split in 3 against a client maximum of 2: %v", err)
	}
	if _, err := client(weak, DDPPolicy{MinNoiseMultiplier: 0.5, MaxShares: 3}).Handle(msgs[1]); err != nil {
		t.Fatalf("a round within the client's policy refused: %v", err)
	}
	// Adaptive clipping: the count's noise is held to the same floor as the update's.
	counted := weak
	cd := *weak.DDP
	cd.NoiseMultiplier, cd.CountStddev = 1, 0.2 // the count's multiplier 2·0.2 = 0.4
	counted.DDP = &cd
	if _, err := client(counted, DDPPolicy{MinNoiseMultiplier: 0.8}).Handle(withSetupClip(msgs[1], 1)); !errors.Is(err, fl.ErrPolicy) || !strings.Contains(err.Error(), "count") {
		t.Fatalf("a count noise multiplier of 0.4 against a client minimum of 0.8: %v", err)
	}
	plain := Spec{Bits: 16, MaxDropout: 0.3}
	if _, err := client(plain, DDPPolicy{MinNoiseMultiplier: 0.5}).Handle(setup(plain)[1]); !errors.Is(err, fl.ErrPolicy) {
		t.Fatalf("a round without distributed DP accepted by a client requiring it: %v", err)
	}
	// A server announcing a split into more shares than the round has clients.
	over := weak
	d := *weak.DDP
	d.MinClients, d.Cohort = 6, 6
	over.DDP = &d
	srvSpec := weak // the server runs a round of 4 but announces a split in 6
	msgs = setup(srvSpec)
	if _, err := client(over, DDPPolicy{}).Handle(msgs[1]); !errors.Is(err, fl.ErrPolicy) {
		t.Fatal("a client accepted a round of 4 clients whose noise is split in 6 shares")
	}
}

// TestAttackDDPSetupDiffersFromSpec: under distributed DP a deviating server announces one Spec
// and sends a setup whose quantisation differs from it (fewer bits, so the noise share wraps in a
// smaller ring; another clip range; a norm bound over fewer entries; another dimension). The
// client derives everything from its own Spec and refuses each such setup before it masks.
func TestAttackDDPSetupDiffersFromSpec(t *testing.T) {
	spec, msgs := ddpSecAggRound(t, 31, 3)
	client := func() fl.SumClient {
		s := spec
		s.Rand = nil
		wire, _ := s.Wire()
		proto, err := FromWire("secagg", wire)
		if err != nil {
			t.Fatal(err)
		}
		c, err := proto.NewClient(1, 1, fl.SumInput{Update: []float32{0.1, 0.2, 0.3}, Weight: 1})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if _, err := client().Handle(msgs[1]); err != nil {
		t.Fatalf("the honest setup refused: %v", err)
	}
	for name, tamper := range map[string]func(*secagg.Config){
		"bits":       func(c *secagg.Config) { c.Bits = 8 },
		"clip range": func(c *secagg.Config) { c.ClipRange *= 4 },
		"norm dim":   func(c *secagg.Config) { c.NormDim = 1 },
		"dim":        func(c *secagg.Config) { c.Dim *= 2; c.NormDim *= 2 },
	} {
		cfg, index, err := decodeSetup(msgs[1])
		if err != nil {
			t.Fatal(err)
		}
		tamper(&cfg)
		if _, err := client().Handle(encodeSetup(&cfg, index)); err == nil {
			t.Fatalf("%s: a setup that differs from the announced Spec was accepted", name)
		}
	}
}

// TestAttackZeroRunID: a client checks the setup's run id against the one its Spec announced,
// but read an all-zero id as "none" — so a server announcing run_id = 16 zero bytes got clients
// that accept the setup of any run, and a setup carrying the all-zero id (never drawn by an
// honest server) made every run with it share signatures, keys and rotation seeds round by
// round. Both are refused now.
func TestAttackZeroRunID(t *testing.T) {
	zero := make([]byte, 16)
	if _, err := FromWire("secagg", []byte(`{"run_id":"AAAAAAAAAAAAAAAAAAAAAA=="}`)); err == nil {
		t.Fatal("a Spec announcing the all-zero run id accepted")
	}
	if _, err := New("secaggplus", Spec{RunID: zero}); err == nil {
		t.Fatal("a server given the all-zero run id accepted it")
	}
	server, _ := NewSecAgg(SecAggOptions{Rand: seeded(32)})
	srv, err := server.NewServer(1, []fl.ClientID{1, 2, 3}, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	msgs, _, err := srv.Next()
	if err != nil {
		t.Fatal(err)
	}
	cfg, index, _ := decodeSetup(msgs[1])
	cfg.RunID = [16]byte{}
	wire, _ := Spec{}.Wire()
	proto, _ := FromWire("secagg", wire)
	c, _ := proto.NewClient(1, 1, fl.SumInput{Update: []float32{0.1, 0.2}, Weight: 1})
	if _, err := c.Handle(encodeSetup(&cfg, index)); err == nil || !strings.Contains(err.Error(), "run") {
		t.Fatalf("a setup with the all-zero run id accepted: %v", err)
	}
}

// TestAttackDDPAdaptiveClipOutOfRange: under adaptive distributed DP the setup carries the
// round's clip, chosen by the server. A deviating server sends NaN, a negative, zero, ±Inf or a
// subnormal clip: each is refused before the client masks anything (quickly). Or a finite clip
// so large that S² overflowed: Params used to return γ = +Inf with Δ2 and the share parameter
// NaN (and the client spent 200 full rounding passes before failing); Params now derives
// everything for S = 1 and scales γ last, so any clip it accepts, huge or tiny, and any clip
// per client within a round, gives the same Δ2 and shares bit for bit: the noise relative to
// the clip cannot move.
func TestAttackDDPAdaptiveClipOutOfRange(t *testing.T) {
	d := *ddpConfig(privacy.MechanismSkellam, 3)
	d.Cohort, d.CountStddev = 4, 1
	spec := Spec{Bits: 16, MaxDropout: 0.3, DDP: &d, Rand: seeded(33)}
	server, err := New("secagg", spec)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(1, []fl.ClientID{1, 2, 3, 4}, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	msgs, _, err := srv.Next()
	if err != nil {
		t.Fatal(err)
	}
	base := msgs[1][:setupSize]
	client := func() fl.SumClient {
		s := spec
		s.Rand = nil
		wire, _ := s.Wire()
		proto, err := FromWire("secagg", wire)
		if err != nil {
			t.Fatal(err)
		}
		c, err := proto.NewClient(1, 1, fl.SumInput{Update: []float32{0.1, 0.2, 0.3}, Weight: 1, Unclipped: 1})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if _, err := client().Handle(withSetupClip(base, 0.7)); err != nil {
		t.Fatalf("an honest round clip refused: %v", err)
	}
	for _, clip := range []float64{math.NaN(), -1, 0, math.Inf(1), math.Inf(-1), 5e-324} {
		start := time.Now()
		if _, err := client().Handle(withSetupClip(base, clip)); err == nil {
			t.Errorf("round clip %v accepted", clip)
		} else if el := time.Since(start); el > time.Second {
			t.Errorf("round clip %v refused only after %v", clip, el)
		}
	}
	ref, err := d.Params(1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, clip := range []float64{1e-200, 1e-6, 1e-3, 0.7, 1e3, 1e6, 1e160, 1e300, math.MaxFloat64} {
		c := d
		c.Clip = clip
		p, err := c.Params(1000)
		if err != nil {
			continue // refused: nothing is encoded
		}
		if p.L2 != ref.L2 || p.ShareParam != ref.ShareParam || p.CountShare != ref.CountShare || !(p.Gamma > 0) || math.IsInf(p.Gamma, 0) {
			t.Errorf("clip %v: γ %v Δ2 %v share %v count %v; clip 1: Δ2 %v share %v count %v", clip, p.Gamma, p.L2, p.ShareParam, p.CountShare, ref.L2, ref.ShareParam, ref.CountShare)
		}
	}
}

// TestAttackDDPCountErodesNoiseFloor: under adaptive distributed DP the round releases the
// update sum and the noised count. The client held each to its floor on its own, so a server
// announcing z = 1 for the update and 2·CountStddev = 1 for the count passed a floor of 1 while
// the round, one mechanism of the two, has multiplier (1 + 1)^−½ ≈ 0.71. The floor now applies
// to the combined multiplier; a count noise that leaves it above the floor is accepted.
func TestAttackDDPCountErodesNoiseFloor(t *testing.T) {
	msg := func(d privacy.DDPConfig) ([]byte, fl.SumClient) {
		spec := Spec{Bits: 16, MaxDropout: 0.3, DDP: &d, Rand: seeded(34)}
		server, err := New("secagg", spec)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := server.NewServer(1, []fl.ClientID{1, 2, 3, 4}, 2, 1)
		if err != nil {
			t.Fatal(err)
		}
		msgs, _, err := srv.Next()
		if err != nil {
			t.Fatal(err)
		}
		spec.Rand = nil
		wire, _ := spec.Wire()
		proto, err := FromWire("secagg", wire)
		if err != nil {
			t.Fatal(err)
		}
		if err := proto.(*SecAgg).RequireDDP(DDPPolicy{MinNoiseMultiplier: 1}); err != nil {
			t.Fatal(err)
		}
		c, err := proto.NewClient(1, 1, fl.SumInput{Update: []float32{0.1, 0.2}, Weight: 1, Unclipped: 1})
		if err != nil {
			t.Fatal(err)
		}
		return msgs[1], c
	}
	d := privacy.DDPConfig{Mechanism: privacy.MechanismSkellam, Bits: 16, Clip: 1, NoiseMultiplier: 1, MinClients: 3, Cohort: 4, CountStddev: 0.5}
	m, c := msg(d)
	if _, err := c.Handle(m); !errors.Is(err, fl.ErrPolicy) || !strings.Contains(err.Error(), "count") {
		t.Fatalf("update z = 1 with a count of z = 1 (together 0.71) against a floor of 1: %v", err)
	}
	d.NoiseMultiplier, d.CountStddev = 1.2, 1.5 // (1.2⁻² + 3⁻²)^−½ ≈ 1.11
	m, c = msg(d)
	if _, err := c.Handle(m); err != nil {
		t.Fatalf("update z = 1.2 with a count of z = 3 (together 1.11) against a floor of 1: %v", err)
	}
}

// TestAttackDDPSumOfFewerSurvivorsThanShares: the server splits the noise into M = 3 shares but
// plans a complete-graph round of 4 with threshold t = 2. An honest server abandons a round with
// fewer than M survivors; a deviating one need not: each client checks only that the survivor
// set it is asked to unmask has ≥ t members, so a sum of 2 survivors (2 of 3 shares, noise
// multiplier z·√(2/3)) can be released. A client's DDP policy alone (noise multiplier, maximum
// split) accepts the round; the floor that closes it is the client's own --min-threshold ≥ M
// (complete graph: a released sum holds ≥ t masked inputs), documented with the policy, and a
// client with it refuses the setup before masking anything.
func TestAttackDDPSumOfFewerSurvivorsThanShares(t *testing.T) {
	d := privacy.DDPConfig{Mechanism: privacy.MechanismSkellam, Bits: 16, Clip: 1, NoiseMultiplier: 0.5, MinClients: 3, Cohort: 4}
	spec := Spec{Bits: 16, MaxDropout: 0.3, DDP: &d, Rand: seeded(35)}
	server, err := New("secagg", spec)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(1, []fl.ClientID{1, 2, 3, 4}, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	msgs, _, err := srv.Next()
	if err != nil {
		t.Fatal(err)
	}
	if cfg, _, _ := decodeSetup(msgs[1]); cfg.Threshold >= d.MinClients {
		t.Fatalf("threshold %d: the attack needs one below the %d shares", cfg.Threshold, d.MinClients)
	}
	client := func(minThreshold int) fl.SumClient {
		s := spec
		s.Rand = nil
		wire, _ := s.Wire()
		proto, err := FromWire("secagg", wire)
		if err != nil {
			t.Fatal(err)
		}
		sa := proto.(*SecAgg)
		if err := sa.RequireDDP(DDPPolicy{MinNoiseMultiplier: 0.5, MaxShares: 3}); err != nil {
			t.Fatal(err)
		}
		sa.require(0, minThreshold)
		c, err := sa.NewClient(1, 1, fl.SumInput{Update: []float32{0.1, 0.2}, Weight: 1})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if _, err := client(0).Handle(msgs[1]); err != nil {
		t.Fatalf("the residual risk changed (update the docs): the DDP policy alone refused t < M: %v", err)
	}
	if _, err := client(d.MinClients).Handle(msgs[1]); !errors.Is(err, fl.ErrPolicy) || !strings.Contains(err.Error(), "threshold") {
		t.Fatalf("a client with --min-threshold = M accepted a round of threshold below M: %v", err)
	}
}

// TestDDPClientNoiseFromCryptoRand: a client built from the announced Spec (FromWire: Rand is
// never sent) draws its noise share and rounding from crypto/rand — two clients with the same
// update, round and setup send different encodings — while only a Spec given Rand in-process (a
// seeded simulation) reproduces them.
func TestDDPClientNoiseFromCryptoRand(t *testing.T) {
	spec, msgs := ddpSecAggRound(t, 36, 64)
	cfg, _, err := decodeSetup(msgs[1])
	if err != nil {
		t.Fatal(err)
	}
	encode := func(proto fl.SecureSum) []uint32 {
		c, err := proto.NewClient(1, 1, fl.SumInput{Update: make([]float32, 64), Weight: 1})
		if err != nil {
			t.Fatal(err)
		}
		enc, err := c.(*secaggClient).encodeDDP(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		return enc
	}
	wire, err := spec.Wire()
	if err != nil {
		t.Fatal(err)
	}
	fromWire := func() fl.SecureSum {
		p, err := FromWire("secagg", wire)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if a, b := encode(fromWire()), encode(fromWire()); slices.Equal(a, b) {
		t.Fatal("two deployed clients drew the same noise share: not from crypto/rand")
	}
	seededProto := func() fl.SecureSum {
		p, err := New("secagg", spec)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if a, b := encode(seededProto()), encode(seededProto()); !slices.Equal(a, b) {
		t.Fatal("a seeded simulation's noise is not reproducible")
	}
}

// ddpSecAggRound is a SecAgg server's first round under Skellam distributed DP (cohort 4, seeded
// with seed), for dimension dim: the Spec and the server's setup messages.
func ddpSecAggRound(t *testing.T, seed uint64, dim int) (Spec, map[fl.ClientID][]byte) {
	t.Helper()
	spec := Spec{Bits: 16, MaxDropout: 0.3, DDP: ddpConfig(privacy.MechanismSkellam, 3), Rand: seeded(seed)}
	spec.DDP.Cohort = 4
	server, err := New("secagg", spec)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(1, []fl.ClientID{1, 2, 3, 4}, dim, 1)
	if err != nil {
		t.Fatal(err)
	}
	msgs, _, err := srv.Next()
	if err != nil {
		t.Fatal(err)
	}
	return spec, msgs
}
