package he

import (
	"crypto/ecdh"
	crand "crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/multiparty"
	"github.com/tuneinsight/lattigo/v6/ring"
)

// Attacks by a server that does not follow the protocol. Each test plays the server itself:
// it builds the messages a malicious server would send to the honest parties' state machines
// and asserts that they refuse. Where the attack needs a member or client to have answered,
// the test also checks, by bypassing the refusing check (white box), that the forged
// messages would indeed have leaked: the attack is real, and only the check stops it.

// rogueParty is an identity from a CA the server controls, named like a real party: the
// honest parties' trust root does not know that CA.
type rogueParty struct {
	ca *SimCA
}

func newRogue(t *testing.T) *rogueParty {
	t.Helper()
	ca, err := NewSimCA()
	if err != nil {
		t.Fatal(err)
	}
	return &rogueParty{ca: ca}
}

// as returns a rogue identity carrying the name of party id.
func (r *rogueParty) as(t *testing.T, id PartyID) Identity {
	t.Helper()
	v, err := r.ca.Issue(fmt.Sprintf("party-%d", id))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// encryptAs encrypts update as party from, signed with id (which the setup's trust root need
// not know: the server can encrypt under the public key and sign with whatever it holds).
func encryptAs(t *testing.T, setup *PublicSetup, id Identity, round uint64, from PartyID, update []float32, weight float64) *Upload {
	t.Helper()
	enc, err := NewEncryptor(setup, id, testSimulation(t).Trust)
	if err != nil {
		t.Fatal(err)
	}
	up, err := enc.Encrypt(round, from, update, weight)
	if err != nil {
		t.Fatal(err)
	}
	return up
}

func contributionOf(u *Upload) Contribution {
	h0, h1 := halfDigests(u.Ciphertexts)
	return Contribution{From: u.From, C0Digest: h0, C1Digest: h1, Signature: u.Signature}
}

func c1Of(u *Upload) []ring.Poly {
	out := make([]ring.Poly, len(u.Ciphertexts))
	for k := range u.Ciphertexts {
		out[k] = u.Ciphertexts[k][1]
	}
	return out
}

// sumUploads adds the uploads' ciphertexts (one ciphertext each).
func sumUploads(p *Params, ups ...*Upload) [2]ring.Poly {
	rq := p.rlwe.RingQ()
	s := [2]ring.Poly{rq.NewPoly(), rq.NewPoly()}
	for _, u := range ups {
		rq.Add(s[0], u.Ciphertexts[0][0], s[0])
		rq.Add(s[1], u.Ciphertexts[0][1], s[1])
	}
	return s
}

// uncheckedShares is what the active members would have released for c1 had they not
// checked anything (white box: the share computation alone).
func uncheckedShares(t *testing.T, keys map[PartyID]*KeyMaterial, active []PartyID, round uint64, c1 ring.Poly) []*DecryptShare {
	t.Helper()
	var out []*DecryptShare
	for _, id := range active {
		d := newTestDecryptor(t, keys[id])
		s, err := d.finish(&DecryptRequest{Ceremony: d.km.Setup.Ceremony.ID, Round: round, Active: active}, [32]byte{}, []ring.Poly{c1})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func weighted(x []float32, w float64) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v) * w
	}
	return out
}

func victimUpdate(dim int) []float32 {
	rng := newRNG(77)
	x := make([]float32, dim)
	for i := range x {
		x[i] = float32(rng.Float64()*2 - 1)
	}
	return x
}

// refuse asserts that err is a refusal of an untrusted or insufficient message.
func refuse(t *testing.T, what string, err error, want ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: accepted", what)
	}
	if len(want) == 0 {
		want = []error{ErrUntrusted}
	}
	for _, w := range want {
		if errors.Is(err, w) {
			return
		}
	}
	t.Fatalf("%s: refused for the wrong reason: %v", what, err)
}

// Attack (a): the committee used to check only a contributor count written by the server.
// The server pairs a victim's ciphertext with zero ciphertexts of its own (signed by
// identities of its own CA, named like real clients), under fresh round numbers, and asks
// the committee to decrypt: the sum is the victim's update.
func TestAttackVictimPairedWithServerZeros(t *testing.T) {
	p := testParams(t)
	committee := committeeIDs(5)
	setup, keys := runCeremony(t, p, committee, 3)
	rogue := newRogue(t)
	const dim = 20
	x := victimUpdate(dim)
	const round = 7
	victim := encryptAs(t, setup, identityOf(t, 1), round, 1, x, 42)
	zeros := []*Upload{
		encryptAs(t, setup, rogue.as(t, 2), round, 2, make([]float32, dim), 1e-9),
		encryptAs(t, setup, rogue.as(t, 3), round, 3, make([]float32, dim), 1e-9),
	}
	// The attack is real: shares of victim + zeros decrypt to the victim's update.
	sum := sumUploads(p, append([]*Upload{victim}, zeros...)...)
	leak := combineByHand(p, [][2]ring.Poly{sum}, uncheckedShares(t, keys, committee[:3], round, sum[1]), dim)
	leakErr := maxAbsDiff(leak, weighted(x, 42))
	t.Logf("unchecked members would reveal the victim's update to within %.2g", leakErr)
	if leakErr > p.MaxAbsError(3) {
		t.Fatalf("the forged aggregate does not decrypt to the victim (error %.3g): the test's attack is broken", leakErr)
	}

	// The server's view of the round: the victim's real contribution and its own.
	cs := []Contribution{contributionOf(victim), contributionOf(zeros[0]), contributionOf(zeros[1])}
	c1 := [][]ring.Poly{c1Of(victim), c1Of(zeros[0]), c1Of(zeros[1])}
	members := map[PartyID]*Decryptor{}
	for _, id := range committee {
		members[id] = newTestDecryptor(t, keys[id])
	}
	// 1. Members refuse to approve a set with contributions their trust root does not certify,
	// whatever the round number the server tries.
	for r := uint64(round); r < round+5; r++ {
		req := &ApprovalRequest{Ceremony: setup.Ceremony.ID, Round: r, Dim: dim, Contributions: cs}
		for _, id := range committee {
			_, err := members[id].Approve(req)
			refuse(t, fmt.Sprintf("round %d: member %d approving victim + server zeros", r, id), err)
		}
	}
	// 2. With approvals forged by the server's own identities, members refuse to decrypt.
	var forged []Approval
	m := manifestDigest(setup.Digest(), round, dim, cs)
	for _, id := range committee[:4] {
		sig, err := rogue.as(t, id).sign(approvalDigest(setup.Ceremony.Run, setup.Digest(), round, id, m))
		if err != nil {
			t.Fatal(err)
		}
		forged = append(forged, Approval{Ceremony: setup.Ceremony.ID, Round: round, From: id, Signature: sig})
	}
	req := &DecryptRequest{Ceremony: setup.Ceremony.ID, Round: round, Dim: dim, Active: committee[:3],
		Contributions: cs, Approvals: forged, C1: c1}
	for _, id := range req.Active {
		_, err := members[id].Share(req)
		refuse(t, fmt.Sprintf("member %d decrypting with forged approvals", id), err)
	}
	// 3. The old count-only request: the victim alone, "3 contributors" claimed by listing the
	// victim's contribution under three party ids: the signature binds the sender.
	dup := []Contribution{contributionOf(victim), contributionOf(victim), contributionOf(victim)}
	dup[1].From, dup[2].From = 2, 3
	_, err := members[committee[0]].Approve(&ApprovalRequest{Ceremony: setup.Ceremony.ID, Round: round, Dim: dim, Contributions: dup})
	refuse(t, "victim's contribution relabelled as three", err)

	// 4. A real round's approvals and manifest, but the c1 halves of victim + zeros: the members
	// recompute the c1 digests and refuse.
	a := newTestAggregator(t, setup, round+10, dim)
	for id := PartyID(1); id <= 3; id++ {
		if err := a.Add(encryptAs(t, setup, identityOf(t, id), round+10, id, x, 1)); err != nil {
			t.Fatal(err)
		}
	}
	decs := approveAll(t, a, keys, committee)
	honest, err := a.DecryptRequest(committee[:3])
	if err != nil {
		t.Fatal(err)
	}
	swapped := *honest
	swapped.c1raw = nil
	swapped.C1 = c1
	for _, id := range swapped.Active {
		_, err := decs[id].Share(&swapped)
		refuse(t, fmt.Sprintf("member %d decrypting other c1 halves under an approved manifest", id), err)
	}
	// 5. The real approvals of that round attached to the victim + zeros manifest.
	reuse := DecryptRequest{Ceremony: setup.Ceremony.ID, Round: round + 10, Dim: dim, Active: committee[:3],
		Contributions: cs, Approvals: honest.Approvals, C1: c1}
	for _, id := range reuse.Active {
		_, err := decs[id].Share(&reuse)
		refuse(t, fmt.Sprintf("member %d decrypting with another manifest's approvals", id), err)
	}
	// The honest round still decrypts.
	for _, id := range honest.Active {
		s, err := decs[id].Share(honest)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.AddShare(s); err != nil {
			t.Fatal(err)
		}
	}
	agg, err := a.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if e := maxAbsDiff(agg.Sum, weighted(x, 3)); e > p.MaxAbsError(3) {
		t.Fatalf("honest round after the attacks: error %.3g", e)
	}
}

// decryptWithKey decrypts a ciphertext with a secret key (the server's own, in the attacks).
func decryptWithKey(p *Params, sk *rlwe.SecretKey, ct [2]ring.Poly, dim int) []float64 {
	rq := p.rlwe.RingQ()
	m := rq.NewPoly()
	rq.NTT(ct[1], m)
	rq.MulCoeffsMontgomery(m, sk.Value.Q, m)
	rq.INTT(m, m)
	rq.Add(m, ct[0], m)
	digits := make([]int64, len(p.moduli))
	out := make([]float64, dim)
	for i := range out {
		out[i] = p.decodeValue(m.Coeffs, i, digits)
	}
	return out
}

// Attack (b): clients used to encrypt under whatever public key the setup carried. The server
// substitutes a key it holds the secret of.
func TestAttackSubstitutedPublicKey(t *testing.T) {
	p := testParams(t)
	committee := committeeIDs(3)
	setup, _ := runCeremony(t, p, committee, 2)
	trust := testSimulation(t).Trust
	serverSK, serverPK := rlwe.NewKeyGenerator(p.rlwe).GenKeyPairNew()
	rogue := newRogue(t)
	const dim = 20
	x := victimUpdate(dim)

	// The attack is real: a client encrypting under the substituted key is read by the server.
	naive := &Encryptor{setup: setup, p: p, base: rlwe.NewEncryptor(p.rlwe, serverPK), id: identityOf(t, 1), workers: 1}
	up, err := naive.Encrypt(1, 1, x, 5)
	if err != nil {
		t.Fatal(err)
	}
	if e := maxAbsDiff(decryptWithKey(p, serverSK, up.Ciphertexts[0], dim), weighted(x, 5)); e > 1e-6 {
		t.Fatalf("the server's key does not decrypt (error %.3g): the test's attack is broken", e)
	}

	resign := func(s *PublicSetup, signer func(j int) Identity) {
		names := make([]string, len(committee))
		for j, id := range committee {
			names[j] = fmt.Sprintf("party-%d", id)
		}
		s.Endorsements = make([]Signature, len(committee))
		for j, id := range committee {
			sig, err := signer(j).sign(s.endorsementDigest(id, names))
			if err != nil {
				t.Fatal(err)
			}
			s.Endorsements[j] = sig
		}
	}
	substituted := func() *PublicSetup {
		s := *setup
		s.PublicKey = serverPK
		return &s
	}
	kept := substituted() // the members' real endorsements, of another key
	rogueSigned := substituted()
	resign(rogueSigned, func(j int) Identity { return rogue.as(t, committee[j]) })
	unsigned := substituted()
	unsigned.Endorsements = nil
	// A whole ceremony of the server's invention, its committee certified by its own CA.
	fakeCer, err := NewCeremony(p, committee, 2, crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	fake := &PublicSetup{Ceremony: *fakeCer, PublicKey: serverPK}
	resign(fake, func(j int) Identity { return rogue.as(t, committee[j]) })
	// Two committee seats endorsed by the same real member.
	twice := substituted()
	twice.PublicKey = setup.PublicKey
	twice.Endorsements = append([]Signature(nil), setup.Endorsements...)
	twice.Endorsements[1] = twice.Endorsements[0]

	for name, s := range map[string]*PublicSetup{"members' endorsements of another key": kept,
		"endorsed by the server's CA": rogueSigned, "no endorsements": unsigned, "a ceremony of the server's own": fake,
		"one member in two seats": twice} {
		// Through the wire, as a client receives it.
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodePublicSetup(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_, err = NewEncryptor(got, identityOf(t, 1), trust)
		refuse(t, "client encrypting under "+name, err)
	}
	if _, err := NewEncryptor(setup, identityOf(t, 1), trust); err != nil {
		t.Fatalf("the real setup: %v", err)
	}
}

// Attack (c): the ceremony's directory of exchange keys used to be assembled by the server,
// which could put its own X25519 keys in it and open the sealed Shamir shares (K−1 of each
// member's, enough to rebuild every member's secret and so the collective key).
func TestAttackSwappedExchangeKeys(t *testing.T) {
	p := testParams(t)
	committee := committeeIDs(3)
	cer, _, members, dir := ceremonyAtDirectory(t, p, committee, 2)
	serverKey, err := ecdh.X25519().GenerateKey(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rogue := newRogue(t)
	clone := func() *Directory {
		d := &Directory{Ceremony: dir.Ceremony}
		for _, c := range dir.Commitments {
			cc := *c
			d.Commitments = append(d.Commitments, &cc)
		}
		return d
	}
	for i, self := range committee {
		var attacks []*Directory
		// The server's key in every other member's entry, the members' signatures kept…
		kept := clone()
		// …or re-signed by the server's own identities named like the members…
		resigned := clone()
		// …or another member's whole entry copied into a seat.
		copied := clone()
		for j, c := range kept.Commitments {
			if j == i {
				continue
			}
			copy(c.ExchangeKey[:], serverKey.PublicKey().Bytes())
			rc := resigned.Commitments[j]
			copy(rc.ExchangeKey[:], serverKey.PublicKey().Bytes())
			if rc.Signature, err = rogue.as(t, rc.From).sign(rc.digest(cer)); err != nil {
				t.Fatal(err)
			}
		}
		other := (i + 1) % len(committee)
		cc := *copied.Commitments[(i+2)%len(committee)]
		cc.From = committee[other]
		copied.Commitments[other] = &cc
		attacks = append(attacks, kept, resigned, copied)
		for k, d := range attacks {
			reveal, sealed, err := members[self].HandleDirectory(d)
			refuse(t, fmt.Sprintf("member %d, forged directory %d", self, k), err)
			if reveal != nil || sealed != nil {
				t.Fatalf("member %d sealed its shares for a forged directory", self)
			}
		}
		// The member still takes part in the real ceremony.
		if _, _, err := members[self].HandleDirectory(dir); err != nil {
			t.Fatal(err)
		}
	}
}

// Attack (c'), the rogue key: a member colluding with the server chooses its public-key share
// after seeing the others', −a·s_server + e − Σ honest shares, so that the collective key
// becomes the server's. The commitments (signed before any share is revealed) bind it.
func TestAttackRogueKeyShare(t *testing.T) {
	p := testParams(t)
	committee := committeeIDs(3)
	cer, server, members, dir := ceremonyAtDirectory(t, p, committee, 2)
	var reveals []*KeyGenShare
	boxes := map[PartyID][]*SealedShare{}
	for _, id := range committee {
		r, sealed, err := members[id].HandleDirectory(dir)
		if err != nil {
			t.Fatal(err)
		}
		reveals = append(reveals, r)
		for _, s := range sealed {
			boxes[s.To] = append(boxes[s.To], s)
		}
	}
	// The server's key in CKG form (the CRS's a), and the rogue share of the colluding member 2.
	rq := p.rlwe.RingQ()
	ckg := multiparty.NewPublicKeyGenProtocol(p.rlwe)
	serverSK := rlwe.NewKeyGenerator(p.rlwe).GenSecretKeyNew()
	target := ckg.AllocateShare()
	ckg.GenShare(serverSK, cer.crp(), &target)
	rogueShare := *target.Value.Q.CopyNew()
	rq.Sub(rogueShare, reveals[0].PublicKeyShare, rogueShare)
	rq.Sub(rogueShare, reveals[1].PublicKeyShare, rogueShare)
	forged := []*KeyGenShare{reveals[0], reveals[1], {Ceremony: cer.ID, From: committee[2], PublicKeyShare: rogueShare}}
	// The attack is real: those shares sum to the server's key.
	pk := rlwe.NewPublicKey(p.rlwe)
	sum := ckg.AllocateShare()
	for _, r := range forged {
		sh := ckg.AllocateShare()
		sh.Value.Q.Copy(r.PublicKeyShare)
		ckg.AggregateShares(sum, sh, &sum)
	}
	ckg.GenPublicKey(sum, cer.crp(), pk)
	serverPK := rlwe.NewPublicKey(p.rlwe)
	ckg.GenPublicKey(target, cer.crp(), serverPK)
	if !pk.Equal(serverPK) {
		t.Fatal("the rogue shares do not sum to the server's key: the test's attack is broken")
	}
	if err := server.HandleKeyGenShare(forged[2]); err == nil {
		t.Fatal("the server's ceremony accepted a share that does not match its commitment")
	}
	for _, id := range committee[:2] {
		km, e, err := members[id].HandleSealedShares(forged, boxes[id])
		refuse(t, fmt.Sprintf("member %d computing the collective key with a rogue share", id), err)
		if km != nil || e != nil {
			t.Fatalf("member %d endorsed a rogue key", id)
		}
	}
}

// Attack (d): a round of two contributors exposes each to the other (the aggregate reaches the
// server and, through the model, the clients: one subtracts its own update). The members
// refuse sums of fewer than their minimum of distinct contributors, 3 by default.
func TestAttackTwoContributors(t *testing.T) {
	p := testParams(t)
	committee := committeeIDs(3)
	setup, keys := runCeremony(t, p, committee, 2)
	const dim, round = 20, 3
	xa, xb := victimUpdate(dim), make([]float32, dim)
	for i := range xb {
		xb[i] = float32(i%5) / 4
	}
	a := encryptAs(t, setup, identityOf(t, 1), round, 1, xa, 3)
	b := encryptAs(t, setup, identityOf(t, 2), round, 2, xb, 7)
	// The exposure is real: A, knowing its own update and the sum, has B's.
	sum := sumUploads(p, a, b)
	dec := combineByHand(p, [][2]ring.Poly{sum}, uncheckedShares(t, keys, committee[:2], round, sum[1]), dim)
	got := make([]float64, dim)
	for i := range got {
		got[i] = dec[i] - 3*float64(xa[i])
	}
	if e := maxAbsDiff(got, weighted(xb, 7)); e > p.MaxAbsError(2) {
		t.Fatalf("A does not recover B (error %.3g): the test's exposure is broken", e)
	}
	cs := []Contribution{contributionOf(a), contributionOf(b)}
	req := &ApprovalRequest{Ceremony: setup.Ceremony.ID, Round: round, Dim: dim, Contributions: cs}
	for _, id := range committee {
		_, err := newTestDecryptor(t, keys[id]).Approve(req)
		refuse(t, fmt.Sprintf("member %d approving two contributors", id), err, ErrTooFewContributors)
	}
	dreq := &DecryptRequest{Ceremony: setup.Ceremony.ID, Round: round, Dim: dim, Active: committee[:2],
		Contributions: cs, C1: [][]ring.Poly{c1Of(a), c1Of(b)}}
	_, err := newTestDecryptor(t, keys[committee[0]]).Share(dreq)
	refuse(t, "member decrypting two contributors", err, ErrTooFewContributors)
	agg := newTestAggregator(t, setup, round, dim)
	for _, u := range []*Upload{a, b} {
		if err := agg.Add(u); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := agg.ApprovalRequest(); !errors.Is(err, ErrTooFewContributors) {
		t.Fatalf("honest server with two uploads: %v", err)
	}
	// A member configured for two (an explicit choice) approves.
	d, err := NewDecryptor(keys[committee[0]], DecryptorConfig{Identity: identityOf(t, committee[0]), Trust: testSimulation(t).Trust, MinContributors: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Approve(req); err != nil {
		t.Fatalf("member configured for two contributors: %v", err)
	}
	if _, err := NewDecryptor(keys[committee[0]], DecryptorConfig{Identity: identityOf(t, committee[0]), Trust: testSimulation(t).Trust, MinContributors: 1}); err == nil {
		t.Fatal("a minimum of one contributor accepted")
	}
}

// Attack (e): differencing. Members that each release one share per round do not stop a
// server that has two disjoint groups of members decrypt two sets of the same round that
// differ by the victim — with one member colluding (K = 5, T = 3), or with none when K ≥ 2T.
// Each honest member approves one set per round, and decrypts only a set approved by
// ⌈(K+T)/2⌉ members: two such quorums share an honest member.
func TestAttackDifferencingTwoSets(t *testing.T) {
	for _, tc := range []struct {
		k, threshold int
		colluding    int // the last members collude with the server: they approve anything
	}{{5, 3, 1}, {6, 3, 0}, {7, 3, 2}} {
		t.Run(fmt.Sprintf("K=%d,T=%d,colluding=%d", tc.k, tc.threshold, tc.colluding), func(t *testing.T) {
			p := testParams(t)
			committee := committeeIDs(tc.k)
			setup, keys := runCeremony(t, p, committee, tc.threshold)
			const dim, round = 20, 4
			x := victimUpdate(dim)
			ups := []*Upload{encryptAs(t, setup, identityOf(t, 1), round, 1, x, 9)}
			for id := PartyID(2); id <= 4; id++ {
				ups = append(ups, encryptAs(t, setup, identityOf(t, id), round, id, victimUpdate(dim), float64(id)))
			}
			decs := map[PartyID]*Decryptor{}
			for _, id := range committee {
				decs[id] = newTestDecryptor(t, keys[id])
			}
			honest := committee[:tc.k-tc.colluding]
			colluders := committee[tc.k-tc.colluding:]
			withVictim := ups                   // {V, A, B, C}
			without := ups[1:]                  // {A, B, C}
			need := tc.threshold - tc.colluding // honest shares each decryption needs
			groups := [2][]PartyID{honest[:need], honest[need : 2*need]}

			// The attack is real: two decryptions, each by colluders + its own honest group,
			// differ by the victim's update.
			var dec [2][]float64
			for g, set := range [2][]*Upload{withVictim, without} {
				sum := sumUploads(p, set...)
				active := append(append([]PartyID(nil), colluders...), groups[g]...)
				dec[g] = combineByHand(p, [][2]ring.Poly{sum}, uncheckedShares(t, keys, active, round, sum[1]), dim)
			}
			diff := make([]float64, dim)
			for i := range diff {
				diff[i] = dec[0][i] - dec[1][i]
			}
			if e := maxAbsDiff(diff, weighted(x, 9)); e > 2*p.MaxAbsError(tc.threshold) {
				t.Fatalf("the two sums do not differ by the victim (error %.3g): the test's attack is broken", e)
			}

			// The server asks each honest group to approve its set, the colluders approve both.
			var reqs [2]*DecryptRequest
			for g, set := range [2][]*Upload{withVictim, without} {
				var cs []Contribution
				var c1 [][]ring.Poly
				for _, u := range set {
					cs = append(cs, contributionOf(u))
					c1 = append(c1, c1Of(u))
				}
				areq := &ApprovalRequest{Ceremony: setup.Ceremony.ID, Round: round, Dim: dim, Contributions: cs}
				var approvals []Approval
				for _, id := range committee {
					switch {
					case contains(colluders, id): // the server signs with the colluder's key
						m := manifestDigest(setup.Digest(), round, dim, cs)
						sig, err := identityOf(t, id).sign(approvalDigest(setup.Ceremony.Run, setup.Digest(), round, id, m))
						if err != nil {
							t.Fatal(err)
						}
						approvals = append(approvals, Approval{Ceremony: setup.Ceremony.ID, Round: round, From: id, Signature: sig})
					case contains(groups[g], id):
						ap, err := decs[id].Approve(areq)
						if err != nil {
							t.Fatalf("member %d approving its set: %v", id, err)
						}
						approvals = append(approvals, *ap)
					}
				}
				reqs[g] = &DecryptRequest{Ceremony: setup.Ceremony.ID, Round: round, Dim: dim,
					Active: append(append([]PartyID(nil), groups[g]...), colluders...), Contributions: cs, Approvals: sortApprovals(approvals), C1: c1}
			}
			// An honest member of one group refuses to approve the other set in the same round.
			other := &ApprovalRequest{Ceremony: setup.Ceremony.ID, Round: round, Dim: dim, Contributions: reqs[1].Contributions}
			_, err := decs[groups[0][0]].Approve(other)
			refuse(t, "a member approving a second set in one round", err)
			// Neither set has a quorum: the honest members refuse to decrypt either…
			for g := range reqs {
				for _, id := range groups[g] {
					_, err := decs[id].Share(reqs[g])
					refuse(t, fmt.Sprintf("member %d decrypting set %d without a quorum", id, g), err)
				}
			}
			// …even with the other set's approvals added (they approve another manifest).
			pooled := *reqs[0]
			pooled.Approvals = sortApprovals(append(append([]Approval(nil), reqs[0].Approvals...), reqs[1].Approvals...))
			_, err = decs[groups[0][0]].Share(&pooled)
			refuse(t, "decrypting with the approvals of two sets pooled", err)
		})
	}
}

func contains(ids []PartyID, id PartyID) bool { return slices.Contains(ids, id) }

// sortApprovals orders approvals by member, keeping the last of each member's.
func sortApprovals(aps []Approval) []Approval {
	last := map[PartyID]Approval{}
	for _, a := range aps {
		last[a.From] = a
	}
	res := make([]Approval, 0, len(last))
	for _, a := range last {
		res = append(res, a)
	}
	slices.SortFunc(res, func(a, b Approval) int { return int(a.From) - int(b.From) })
	return res
}

// Replays: a signature from another round or another run counts for nothing.
func TestAttackReplayAcrossRoundsAndRuns(t *testing.T) {
	p := testParams(t)
	committee := committeeIDs(3)
	setup, keys := runCeremony(t, p, committee, 2)
	setup2, keys2 := runCeremony(t, p, committee, 2) // another run: same members, same identities
	if setup.Ceremony.Run == setup2.Ceremony.Run {
		t.Fatal("two runs share a run id")
	}
	const dim = 10
	x := victimUpdate(dim)
	round7 := []*Upload{}
	for id := PartyID(1); id <= 3; id++ {
		round7 = append(round7, encryptAs(t, setup, identityOf(t, id), 7, id, x, 1))
	}
	// An upload of round 7 relabelled as round 8: the server's own check and the members refuse.
	relabelled := *round7[0]
	relabelled.Round = 8
	a8 := newTestAggregator(t, setup, 8, dim)
	refuse(t, "aggregating a round-7 upload as round 8", a8.Add(&relabelled))
	cs8 := []Contribution{contributionOf(round7[0]), contributionOf(round7[1]), contributionOf(round7[2])}
	_, err := newTestDecryptor(t, keys[committee[0]]).Approve(&ApprovalRequest{Ceremony: setup.Ceremony.ID, Round: 8, Dim: dim, Contributions: cs8})
	refuse(t, "approving round-7 uploads as round 8", err)
	// Approvals of round 7 reused for round 8.
	a7 := newTestAggregator(t, setup, 7, dim)
	for _, u := range round7 {
		if err := a7.Add(u); err != nil {
			t.Fatal(err)
		}
	}
	decs := approveAll(t, a7, keys, committee)
	req7, err := a7.DecryptRequest(committee[:2])
	if err != nil {
		t.Fatal(err)
	}
	req8 := *req7
	req8.Round = 8
	for i := range req8.Approvals {
		req8.Approvals[i].Round = 8
	}
	_, err = decs[committee[0]].Share(&req8)
	refuse(t, "decrypting round 8 with round-7 uploads and approvals", err)
	// Uploads and approvals of run 1 presented in run 2 (its ceremony id rewritten).
	moved := *round7[0]
	moved.Ceremony = setup2.Ceremony.ID
	a2 := newTestAggregator(t, setup2, 7, dim)
	refuse(t, "aggregating an upload of another run", a2.Add(&moved))
	cross := *req7
	cross.Ceremony = setup2.Ceremony.ID
	cross.c1raw = nil
	cross.C1 = [][]ring.Poly{c1Of(round7[0]), c1Of(round7[1]), c1Of(round7[2])}
	cross.Approvals = append([]Approval(nil), req7.Approvals...)
	for i := range cross.Approvals {
		cross.Approvals[i].Ceremony = setup2.Ceremony.ID
	}
	_, err = newTestDecryptor(t, keys2[committee[0]]).Share(&cross)
	refuse(t, "decrypting another run's uploads", err)
	// Run 1's endorsements on run 2's key.
	mixed := *setup2
	mixed.Endorsements = setup.Endorsements
	_, err = NewEncryptor(&mixed, identityOf(t, 1), testSimulation(t).Trust)
	refuse(t, "encrypting under a key endorsed in another run", err)
}

// The trust root is the client's own: a server that runs its own CA and presents a whole
// committee and contributors certified by it convinces nobody.
func TestAttackServerCertificateAuthority(t *testing.T) {
	p := testParams(t)
	committee := committeeIDs(3)
	rogueCA, err := NewSimCA()
	if err != nil {
		t.Fatal(err)
	}
	issued := map[PartyID]Identity{}
	rogueSim := &Simulation{Trust: rogueCA.Trust(), Identity: func(id PartyID) (Identity, error) {
		if v, ok := issued[id]; ok {
			return v, nil
		}
		v, err := rogueCA.Issue(fmt.Sprintf("party-%d", id))
		issued[id] = v
		return v, err
	}}
	// The server runs a full ceremony among identities of its own CA.
	fake, _, err := RunCeremony(rogueSim, p, committee, 2, crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewEncryptor(fake, identityOf(t, 1), testSimulation(t).Trust)
	refuse(t, "a client encrypting under a committee of the server's CA", err)
	// And presents the honest members a round of contributors of its own CA.
	setup, keys := runCeremony(t, p, committee, 2)
	var cs []Contribution
	for id := PartyID(1); id <= 3; id++ {
		idn, _ := rogueSim.Identity(id)
		cs = append(cs, contributionOf(encryptAs(t, setup, idn, 1, id, victimUpdate(5), 1)))
	}
	_, err = newTestDecryptor(t, keys[committee[0]]).Approve(&ApprovalRequest{Ceremony: setup.Ceremony.ID, Round: 1, Dim: 5, Contributions: cs})
	refuse(t, "approving contributors of the server's CA", err)
}

// A malicious client colluding with the server signs two uploads with its one certificate
// under two party ids, so that a manifest of three contributions holds only two parties (the
// honest one exposed to the pair). The aggregator checking signatures, every member's
// approval and every member's share refuse it: a party is its certified name, not its id.
func TestAttackOneClientTwoSeatsInManifest(t *testing.T) {
	p := testParams(t)
	committee := committeeIDs(3)
	setup, keys := runCeremony(t, p, committee, 2)
	const dim, round = 12, 4
	x := victimUpdate(dim)
	sybil := identityOf(t, 1)
	uploads := []*Upload{
		encryptAs(t, setup, sybil, round, 1, make([]float32, dim), 1),
		encryptAs(t, setup, identityOf(t, 2), round, 2, x, 1), // the victim
		encryptAs(t, setup, sybil, round, 9, make([]float32, dim), 1),
	}
	agg := newTestAggregator(t, setup, round, dim)
	for _, u := range uploads[:2] {
		if err := agg.Add(u); err != nil {
			t.Fatal(err)
		}
	}
	refuse(t, "aggregating a second upload by one certified party", agg.Add(uploads[2]), ErrUntrusted)
	cs := []Contribution{contributionOf(uploads[0]), contributionOf(uploads[1]), contributionOf(uploads[2])}
	req := &ApprovalRequest{Ceremony: setup.Ceremony.ID, Round: round, Dim: dim, Contributions: cs}
	for _, id := range committee {
		_, err := newTestDecryptor(t, keys[id]).Approve(req)
		refuse(t, fmt.Sprintf("member %d approving one party in two seats", id), err, ErrUntrusted)
	}
	dreq := &DecryptRequest{Ceremony: setup.Ceremony.ID, Round: round, Dim: dim, Active: committee[:2],
		Contributions: cs, C1: [][]ring.Poly{c1Of(uploads[0]), c1Of(uploads[1]), c1Of(uploads[2])}}
	for _, id := range committee[:2] {
		_, err := newTestDecryptor(t, keys[id]).Share(dreq)
		refuse(t, fmt.Sprintf("member %d decrypting one party in two seats", id), err, ErrUntrusted)
	}
}

// A server that sends one member several approval requests for one round at once, each with
// another contributor set, gets at most one approved: the member's round counter is checked
// and moved atomically (otherwise it approves two sets, and with them a quorum could be had
// for both, and the sets differenced).
func TestAttackConcurrentApprovalsOfOneRound(t *testing.T) {
	p := testParams(t)
	committee := committeeIDs(3)
	setup, keys := runCeremony(t, p, committee, 2)
	const dim, round = 8, 5
	ups := make([]*Upload, 5)
	for i := range ups {
		id := PartyID(i + 1)
		ups[i] = encryptAs(t, setup, identityOf(t, id), round, id, victimUpdate(dim), 1)
	}
	var reqs []*ApprovalRequest // every set of three of the five contributions
	for a := range ups {
		for b := a + 1; b < len(ups); b++ {
			for c := b + 1; c < len(ups); c++ {
				reqs = append(reqs, &ApprovalRequest{Ceremony: setup.Ceremony.ID, Round: round, Dim: dim,
					Contributions: []Contribution{contributionOf(ups[a]), contributionOf(ups[b]), contributionOf(ups[c])}})
			}
		}
	}
	for trial := range 20 {
		d := newTestDecryptor(t, keys[committee[0]])
		var wg sync.WaitGroup
		start := make(chan struct{})
		approved := make([]bool, len(reqs))
		for i, req := range reqs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := d.Approve(req)
				approved[i] = err == nil
			}()
		}
		close(start)
		wg.Wait()
		if n := len(slices.DeleteFunc(approved, func(ok bool) bool { return !ok })); n > 1 {
			t.Fatalf("trial %d: the member approved %d contributor sets of one round", trial, n)
		}
	}
}
