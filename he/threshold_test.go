package he

import (
	"bytes"
	"crypto/ecdh"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/multiparty"
	"github.com/tuneinsight/lattigo/v6/ring"
)

// fixture: a ceremony and a set of encoded, signed uploads (clients 1…n) that can be replayed
// into fresh aggregators, so every subset test decrypts the same aggregate.
type fixture struct {
	p         *Params
	committee []PartyID
	setup     *PublicSetup
	keys      map[PartyID]*KeyMaterial
	dim       int
	uploads   [][]byte
	plain     *plainRound
}

func newFixture(t *testing.T, k, threshold, clients, dim int) *fixture {
	t.Helper()
	f := &fixture{p: testParams(t), committee: committeeIDs(k), dim: dim}
	f.setup, f.keys = runCeremony(t, f.p, f.committee, threshold)
	f.plain = randomRound(rand.New(rand.NewPCG(uint64(k), uint64(clients))), clients, dim)
	for _, id := range f.plain.order {
		u := f.plain.updates[id]
		up, err := newTestEncryptor(t, f.setup, id).Encrypt(1, id, u.Values, u.Weight)
		if err != nil {
			t.Fatal(err)
		}
		b, err := up.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		f.uploads = append(f.uploads, b)
	}
	return f
}

func (f *fixture) aggregator(t *testing.T) *Aggregator {
	t.Helper()
	a := newTestAggregator(t, f.setup, 1, f.dim)
	for _, b := range f.uploads {
		if err := a.AddEncoded(b); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

// approved returns an aggregator of all uploads whose manifest the whole committee approved,
// and the members' decryptors.
func (f *fixture) approved(t *testing.T) (*Aggregator, map[PartyID]*Decryptor) {
	t.Helper()
	a := f.aggregator(t)
	return a, approveAll(t, a, f.keys, f.committee)
}

func (f *fixture) decryptWith(t *testing.T, active []PartyID) (*Aggregate, error) {
	t.Helper()
	a, decs := f.approved(t)
	req, err := a.DecryptRequest(active)
	if err != nil {
		return nil, err
	}
	for _, id := range req.Active {
		s, err := decs[id].Share(req)
		if err != nil {
			return nil, err
		}
		if err := a.AddShare(s); err != nil {
			t.Fatal(err)
		}
	}
	return a.Finish()
}

// subsets returns every subset of ids of size k.
func subsets(ids []PartyID, k int) [][]PartyID {
	if k == 0 {
		return [][]PartyID{nil}
	}
	if len(ids) < k {
		return nil
	}
	var out [][]PartyID
	for _, rest := range subsets(ids[1:], k-1) {
		out = append(out, append([]PartyID{ids[0]}, rest...))
	}
	return append(out, subsets(ids[1:], k)...)
}

func TestAnyThresholdSubsetDecrypts(t *testing.T) {
	f := newFixture(t, 5, 3, 4, 100)
	sets := subsets(f.committee, 3)
	if len(sets) != 10 {
		t.Fatalf("%d subsets", len(sets))
	}
	for _, set := range sets {
		agg, err := f.decryptWith(t, set)
		if err != nil {
			t.Fatalf("subset %v: %v", set, err)
		}
		if e := maxAbsDiff(agg.Sum, f.plain.sum); e > f.p.MaxAbsError(3) {
			t.Fatalf("subset %v: error %.3g", set, e)
		}
	}
}

func TestFewerThanThresholdCannotDecrypt(t *testing.T) {
	f := newFixture(t, 5, 3, 4, 100)
	for _, set := range subsets(f.committee, 2) {
		// The server refuses to issue the request…
		if _, err := f.decryptWith(t, set); !errors.Is(err, ErrNotEnoughMembers) {
			t.Fatalf("subset %v: got %v, want ErrNotEnoughMembers", set, err)
		}
		// …members refuse a request whose active set is below the threshold…
		a, decs := f.approved(t)
		var extra PartyID
		for _, id := range f.committee {
			if id != set[0] && id != set[1] {
				extra = id
			}
		}
		req, err := a.DecryptRequest([]PartyID{set[0], set[1], extra})
		if err != nil {
			t.Fatal(err)
		}
		forged := *req
		forged.Active = set
		rb, _ := forged.MarshalBinary()
		if _, err := decs[set[0]].ShareEncoded(rb); !errors.Is(err, ErrNotEnoughMembers) {
			t.Fatalf("subset %v: member answered a below-threshold request: %v", set, err)
		}
	}
	// …and with only t−1 of the t shares the server gets nothing: Finish refuses, and
	// combining the shares by hand yields values unrelated to the sum.
	a, decs := f.approved(t)
	req, err := a.DecryptRequest(f.committee[:3])
	if err != nil {
		t.Fatal(err)
	}
	var shares []*DecryptShare
	for _, id := range req.Active[:2] {
		s, err := decs[id].Share(req)
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, s)
		if err := a.AddShare(s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Finish(); !errors.Is(err, ErrNotEnoughMembers) {
		t.Fatalf("Finish with t-1 shares: %v", err)
	}
	got := combineByHand(f.p, a.sum, shares, f.dim)
	if e := maxAbsDiff(got, f.plain.sum); e < 1e6 {
		t.Fatalf("t-1 shares decrypt to within %.3g of the sum", e)
	}
}

// combineByHand adds c0 and the given shares and decodes, bypassing every check.
func combineByHand(p *Params, sum [][2]ring.Poly, shares []*DecryptShare, dim int) []float64 {
	rq := p.rlwe.RingQ()
	acc := rq.NewPoly()
	acc.Copy(sum[0][0])
	for _, s := range shares {
		rq.Add(acc, s.Shares[0], acc)
	}
	digits := make([]int64, len(p.moduli))
	out := make([]float64, min(dim, p.N()))
	for i := range out {
		out[i] = p.decodeValue(acc.Coeffs, i, digits)
	}
	return out
}

// TestMemberSharesOncePerRound: a member releases one share per round, whatever the active
// set; a round older than its last is refused; the next round works.
func TestMemberSharesOncePerRound(t *testing.T) {
	f := newFixture(t, 4, 3, 3, 40)
	a, decs := f.approved(t)
	req, err := a.DecryptRequest(f.committee[:3])
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range req.Active[:2] { // the third member drops before answering
		s, err := decs[id].Share(req)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.AddShare(s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Finish(); !errors.Is(err, ErrNotEnoughMembers) {
		t.Fatalf("Finish without the dropped member: %v", err)
	}
	if _, err := decs[req.Active[0]].Share(req); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("second share for the same request: %v", err)
	}
	retry, err := a.DecryptRequest([]PartyID{f.committee[0], f.committee[1], f.committee[3]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decs[f.committee[0]].Share(retry); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("a share for another active set in the same round: %v", err)
	}
	// The next round: fresh uploads of round 2, the same decryptors.
	a2 := newTestAggregator(t, f.setup, 2, f.dim)
	for _, id := range f.plain.order {
		u := f.plain.updates[id]
		up, err := newTestEncryptor(t, f.setup, id).Encrypt(2, id, u.Values, u.Weight)
		if err != nil {
			t.Fatal(err)
		}
		if err := a2.Add(up); err != nil {
			t.Fatal(err)
		}
	}
	r2, _ := a2.ApprovalRequest()
	for _, id := range f.committee {
		ap, err := decs[id].Approve(r2)
		if err != nil {
			t.Fatal(err)
		}
		if err := a2.AddApproval(ap); err != nil {
			t.Fatal(err)
		}
	}
	req2, err := a2.DecryptRequest(f.committee[1:])
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range req2.Active {
		s, err := decs[id].Share(req2)
		if err != nil {
			t.Fatal(err)
		}
		if err := a2.AddShare(s); err != nil {
			t.Fatal(err)
		}
	}
	agg, err := a2.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if e := maxAbsDiff(agg.Sum, f.plain.sum); e > f.p.MaxAbsError(3) {
		t.Fatalf("error %.3g", e)
	}
	// Round 1 is now in every member's past.
	if _, err := decs[f.committee[3]].Share(retry); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("a share for an older round: %v", err)
	}
	if _, err := decs[f.committee[3]].Approve(a.appReq); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("an approval for an older round: %v", err)
	}
	// A member restored from saved key material keeps refusing the past (FirstRound).
	last, ok := decs[f.committee[0]].LastRound()
	if !ok || last != 2 {
		t.Fatalf("last round %d, %v", last, ok)
	}
	restored, err := NewDecryptor(f.keys[f.committee[0]], DecryptorConfig{Identity: identityOf(t, f.committee[0]),
		Trust: testSimulation(t).Trust, FirstRound: last + 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := restored.Approve(r2); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("a restored member approving a past round: %v", err)
	}
}

// forbiddenOnServer are the types that hold a secret key or part of one.
var forbiddenOnServer = []reflect.Type{
	reflect.TypeFor[rlwe.SecretKey](),
	reflect.TypeFor[multiparty.ShamirSecretShare](),
	reflect.TypeFor[multiparty.ShamirPolynomial](),
	reflect.TypeFor[ecdh.PrivateKey](),
	reflect.TypeFor[KeyMaterial](),
	reflect.TypeFor[Decryptor](),
	reflect.TypeFor[CeremonyMember](),
	reflect.TypeFor[Identity](),
}

// reachable reports every type reachable from t through fields, pointers, slices,
// arrays and maps.
func reachable(t reflect.Type, seen map[reflect.Type]bool) {
	if seen[t] {
		return
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		reachable(t.Elem(), seen)
	case reflect.Map:
		reachable(t.Key(), seen)
		reachable(t.Elem(), seen)
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			reachable(t.Field(i).Type, seen)
		}
	case reflect.Interface:
		// Interfaces could hold anything; the server types must not have any that
		// could carry a key. Lattigo's samplers are interfaces but hold no key, and a
		// Trust holds only public certificates.
	}
}

func TestServerViewHoldsNoSecret(t *testing.T) {
	serverTypes := []reflect.Type{
		reflect.TypeFor[Aggregator](), reflect.TypeFor[CeremonyServer](), reflect.TypeFor[PublicSetup](),
		reflect.TypeFor[Upload](), reflect.TypeFor[DecryptRequest](), reflect.TypeFor[DecryptShare](),
		reflect.TypeFor[Directory](), reflect.TypeFor[SealedShare](), reflect.TypeFor[KeyGenShare](),
		reflect.TypeFor[Aggregate](), reflect.TypeFor[Ceremony](), reflect.TypeFor[KeyCommitment](),
		reflect.TypeFor[Endorsement](), reflect.TypeFor[ApprovalRequest](), reflect.TypeFor[Approval](),
	}
	for _, st := range serverTypes {
		seen := map[reflect.Type]bool{}
		reachable(st, seen)
		for _, bad := range forbiddenOnServer {
			if seen[bad] {
				t.Errorf("server-side type %v can hold %v", st, bad)
			}
		}
	}
	// Sanity check of the walker: the member-side types do reach a secret.
	seen := map[reflect.Type]bool{}
	reachable(reflect.TypeFor[KeyMaterial](), seen)
	if !seen[reflect.TypeFor[multiparty.ShamirSecretShare]()] {
		t.Fatal("walker misses the secret share in KeyMaterial")
	}
}

func TestServerCannotDecryptAnIndividualUpload(t *testing.T) {
	f := newFixture(t, 3, 2, 3, 40)
	a, decs := f.approved(t)
	req, err := a.DecryptRequest(f.committee)
	if err != nil {
		t.Fatal(err)
	}
	var shares []*DecryptShare
	for _, id := range req.Active {
		s, err := decs[id].Share(req)
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, s)
	}
	// Shares of the aggregate applied to one client's ciphertext decrypt to noise.
	one, err := DecodeUpload(f.p, f.uploads[0])
	if err != nil {
		t.Fatal(err)
	}
	got := combineByHand(f.p, one.Ciphertexts, shares, f.dim)
	first := f.plain.updates[f.plain.order[0]]
	want := make([]float64, f.dim)
	for i, x := range first.Values {
		want[i] = float64(x) * first.Weight
	}
	if e := maxAbsDiff(got, want); e < 1e6 {
		t.Fatalf("aggregate shares decrypt an individual upload to within %.3g", e)
	}
	// An aggregate of a single upload is refused by the server and by the members.
	single := newTestAggregator(t, f.setup, 1, f.dim)
	if err := single.AddEncoded(f.uploads[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := single.ApprovalRequest(); !errors.Is(err, ErrTooFewContributors) {
		t.Fatalf("server asked to approve one upload: %v", err)
	}
	forged := ApprovalRequest{Ceremony: req.Ceremony, Round: req.Round, Dim: req.Dim, Contributions: req.Contributions[:1]}
	if _, err := newTestDecryptor(t, f.keys[f.committee[0]]).Approve(&forged); !errors.Is(err, ErrTooFewContributors) {
		t.Fatalf("member approved a one-upload aggregate: %v", err)
	}
}

func TestEncryptRejectsBadInput(t *testing.T) {
	f := newFixture(t, 2, 2, 3, 10)
	enc := newTestEncryptor(t, f.setup, 1)
	ok := []float32{1, 2, 3}
	cases := []struct {
		name   string
		update []float32
		weight float64
	}{
		{"empty", nil, 1},
		{"nan value", []float32{1, float32(math.NaN())}, 1},
		{"inf value", []float32{float32(math.Inf(1))}, 1},
		{"zero weight", ok, 0},
		{"negative weight", ok, -1},
		{"nan weight", ok, math.NaN()},
		{"over capacity", []float32{3e38}, 1e3},
	}
	for _, c := range cases {
		if _, err := enc.Encrypt(1, 1, c.update, c.weight); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
	a := newTestAggregator(t, f.setup, 1, f.dim)
	up, _ := enc.Encrypt(2, 1, make([]float32, f.dim), 1)
	if err := a.Add(up); err == nil {
		t.Error("aggregator accepted an upload for another round")
	}
	up, _ = enc.Encrypt(1, 1, make([]float32, f.dim+1), 1)
	if err := a.Add(up); err == nil {
		t.Error("aggregator accepted an upload of the wrong dimension")
	}
	up, _ = enc.Encrypt(1, 1, make([]float32, f.dim), 1)
	if err := a.Add(up); err != nil {
		t.Fatal(err)
	}
	if err := a.Add(up); err == nil {
		t.Error("aggregator accepted a duplicate upload")
	}
	up, _ = enc.Encrypt(1, 2, make([]float32, f.dim), 1)
	if err := a.Add(up); !errors.Is(err, ErrUntrusted) {
		t.Errorf("aggregator accepted a second upload by the same party under another id: %v", err)
	}
	up, _ = newTestEncryptor(t, f.setup, 3).Encrypt(1, 3, make([]float32, f.dim), 1)
	up.Ciphertexts[0][1].Coeffs[0][0] = f.p.moduli[0] // unreduced coefficient
	if err := a.Add(up); err == nil {
		t.Error("aggregator accepted an unreduced coefficient")
	}
}

func TestRejectedUploadLeavesAggregateUnchanged(t *testing.T) {
	f := newFixture(t, 2, 2, 3, 2*4096+5) // three ciphertexts per upload
	for _, verify := range []bool{false, true} {
		a := f.aggregator(t)
		if !verify {
			a.ver = nil // the streaming decoder's own checks only
		}
		before := make([][2]ring.Poly, len(a.sum))
		for k := range a.sum {
			before[k] = [2]ring.Poly{*a.sum[k][0].CopyNew(), *a.sum[k][1].CopyNew()}
		}
		unchanged := func(what string) {
			t.Helper()
			for k := range a.sum {
				if !a.sum[k][0].Equal(&before[k][0]) || !a.sum[k][1].Equal(&before[k][1]) {
					t.Fatalf("%s: ciphertext %d of the aggregate changed", what, k)
				}
			}
			if len(a.Contributors()) != 3 {
				t.Fatalf("%s: rejected upload counted as a contribution", what)
			}
		}
		bad := relabel(nil, f.uploads[0], 99)
		// Corrupt the last coefficient of the last polynomial: everything before it is
		// added first and must be rolled back.
		binary.LittleEndian.PutUint64(bad[len(bad)-8:], f.p.moduli[len(f.p.moduli)-1])
		if err := a.AddEncoded(bad); !errors.Is(err, ErrMalformed) {
			t.Fatalf("corrupted upload: %v", err)
		}
		unchanged("corrupted upload")
		if verify {
			// A relabelled upload is well formed but not signed by party 99: rolled back too.
			if err := a.AddEncoded(relabel(nil, f.uploads[0], 99)); !errors.Is(err, ErrUntrusted) {
				t.Fatalf("relabelled upload: %v", err)
			}
			unchanged("relabelled upload")
			continue
		}
		// The same sender may retry with a valid upload.
		if err := a.AddEncoded(relabel(nil, f.uploads[0], 99)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestEncodedSharesValidatedAndRolledBack(t *testing.T) {
	f := newFixture(t, 3, 2, 3, 2*4096+5)
	a, decs := f.approved(t)
	req, err := a.DecryptRequest(f.committee[:2])
	if err != nil {
		t.Fatal(err)
	}
	var encoded [][]byte
	for _, id := range req.Active {
		s, err := decs[id].Share(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := s.MarshalBinary()
		encoded = append(encoded, b)
	}
	bad := bytes.Clone(encoded[0])
	binary.LittleEndian.PutUint64(bad[len(bad)-8:], f.p.moduli[len(f.p.moduli)-1])
	if err := a.AddShareEncoded(bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("corrupted share: %v", err)
	}
	for _, b := range encoded {
		if err := a.AddShareEncoded(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.AddShareEncoded(encoded[0]); err == nil {
		t.Fatal("duplicate share accepted")
	}
	agg, err := a.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if e := maxAbsDiff(agg.Sum, f.plain.sum); e > f.p.MaxAbsError(2) {
		t.Fatalf("error %.3g after a rejected share", e)
	}
}

func TestShareEncodedMatchesShareAndRejectsMalformed(t *testing.T) {
	f := newFixture(t, 3, 2, 3, 100)
	a, decs := f.approved(t)
	req, err := a.DecryptRequest(f.committee[:2])
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := req.MarshalBinary()
	d0 := decs[req.Active[0]]
	before, _ := d0.LastRound()
	bad := bytes.Clone(rb)
	binary.LittleEndian.PutUint64(bad[len(bad)-8:], f.p.moduli[len(f.p.moduli)-1])
	flipped := bytes.Clone(rb)
	flipped[len(flipped)-100] ^= 1 // a reduced coefficient, but not the signed c1
	for _, b := range [][]byte{bad, rb[:len(rb)-1], append(bytes.Clone(rb), 0)} {
		if _, err := d0.ShareEncoded(b); !errors.Is(err, ErrMalformed) {
			t.Fatalf("malformed request: %v", err)
		}
	}
	if _, err := d0.ShareEncoded(flipped); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("request with altered c1 halves: %v", err)
	}
	if after, _ := d0.LastRound(); after != before || d0.state.shared {
		t.Fatal("a rejected request moved the member's round counter")
	}
	s0, err := d0.ShareEncoded(rb)
	if err != nil {
		t.Fatal(err)
	}
	s1, err := decs[req.Active[1]].Share(req)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*DecryptShare{s0, s1} {
		if err := a.AddShare(s); err != nil {
			t.Fatal(err)
		}
	}
	agg, err := a.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if e := maxAbsDiff(agg.Sum, f.plain.sum); e > f.p.MaxAbsError(2) {
		t.Fatalf("error %.3g", e)
	}
}
