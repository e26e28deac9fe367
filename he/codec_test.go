package he

import (
	"bytes"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/tuneinsight/lattigo/v6/ring"
)

// allMessages runs a small ceremony and round and returns one encoding of every
// message kind with its decoder.
type encoded struct {
	name   string
	b      []byte
	decode func([]byte) (marshaler, error)
}

func allMessages(t testing.TB) (*Params, []encoded) {
	t.Helper()
	p := testParams(t)
	sim := testSimulation(t)
	committee := committeeIDs(3)
	cer, err := NewCeremony(p, committee, 2, crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	server, _ := NewCeremonyServer(cer)
	members := map[PartyID]*CeremonyMember{}
	var commitments []*KeyCommitment
	for _, id := range committee {
		m, msg, err := JoinCeremony(cer, id, identityOf(t, id), sim.Trust, crand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		members[id] = m
		commitments = append(commitments, msg)
		if err := server.HandleCommitment(msg); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := server.Directory()
	if err != nil {
		t.Fatal(err)
	}
	var sealed []*SealedShare
	var reveals []*KeyGenShare
	for _, id := range committee {
		r, s, err := members[id].HandleDirectory(dir)
		if err != nil {
			t.Fatal(err)
		}
		reveals = append(reveals, r)
		if err := server.HandleKeyGenShare(r); err != nil {
			t.Fatal(err)
		}
		sealed = append(sealed, s...)
		for _, x := range s {
			if err := server.HandleSealedShare(x); err != nil {
				t.Fatal(err)
			}
		}
	}
	all, err := server.KeyGenShares()
	if err != nil {
		t.Fatal(err)
	}
	keys := map[PartyID]*KeyMaterial{}
	var endorsement *Endorsement
	for _, id := range committee {
		boxes, _ := server.SharesFor(id)
		km, e, err := members[id].HandleSealedShares(all, boxes)
		if err != nil {
			t.Fatal(err)
		}
		keys[id], endorsement = km, e
		if err := server.HandleEndorsement(e); err != nil {
			t.Fatal(err)
		}
	}
	setup, err := server.Setup()
	if err != nil {
		t.Fatal(err)
	}
	agg := newTestAggregator(t, setup, 4, 10)
	var up *Upload
	for id := PartyID(1); id <= 3; id++ {
		up, err = newTestEncryptor(t, setup, id).Encrypt(4, id, make([]float32, 10), 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := agg.Add(up); err != nil {
			t.Fatal(err)
		}
	}
	appReq, err := agg.ApprovalRequest()
	if err != nil {
		t.Fatal(err)
	}
	decs := approveAll(t, agg, keys, committee)
	approval, err := newTestDecryptor(t, keys[committee[0]]).Approve(appReq)
	if err != nil {
		t.Fatal(err)
	}
	req, err := agg.DecryptRequest(committee[1:])
	if err != nil {
		t.Fatal(err)
	}
	share, err := decs[committee[1]].Share(req)
	if err != nil {
		t.Fatal(err)
	}
	km := keys[committee[1]]
	must := func(m marshaler) []byte {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	wrap := func(f func([]byte) (marshaler, error)) func([]byte) (marshaler, error) { return f }
	return p, []encoded{
		{"params", must(p), wrap(func(b []byte) (marshaler, error) { return DecodeParams(b) })},
		{"ceremony", must(cer), wrap(func(b []byte) (marshaler, error) { return DecodeCeremony(b) })},
		{"key commitment", must(commitments[0]), wrap(func(b []byte) (marshaler, error) { return DecodeKeyCommitment(b) })},
		{"directory", must(dir), wrap(func(b []byte) (marshaler, error) { return DecodeDirectory(b) })},
		{"keygen share", must(reveals[0]), wrap(func(b []byte) (marshaler, error) { return DecodeKeyGenShare(p, b) })},
		{"sealed share", must(sealed[0]), wrap(func(b []byte) (marshaler, error) { return DecodeSealedShare(p, b) })},
		{"endorsement", must(endorsement), wrap(func(b []byte) (marshaler, error) { return DecodeEndorsement(b) })},
		{"public setup", must(setup), wrap(func(b []byte) (marshaler, error) { return DecodePublicSetup(b) })},
		{"key material", must(km), wrap(func(b []byte) (marshaler, error) { return DecodeKeyMaterial(b) })},
		{"upload", must(up), wrap(func(b []byte) (marshaler, error) { return DecodeUpload(p, b) })},
		{"approval request", must(appReq), wrap(func(b []byte) (marshaler, error) { return DecodeApprovalRequest(b) })},
		{"approval", must(approval), wrap(func(b []byte) (marshaler, error) { return DecodeApproval(b) })},
		{"decrypt request", must(req), wrap(func(b []byte) (marshaler, error) { return DecodeDecryptRequest(p, b) })},
		{"decrypt share", must(share), wrap(func(b []byte) (marshaler, error) { return DecodeDecryptShare(p, b) })},
	}
}

func TestMessagesRoundTrip(t *testing.T) {
	_, msgs := allMessages(t)
	for _, m := range msgs {
		v, err := m.decode(m.b)
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		again, err := v.MarshalBinary()
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		if !bytes.Equal(again, m.b) {
			t.Fatalf("%s: re-encoding differs", m.name)
		}
	}
}

func TestMalformedMessagesRejected(t *testing.T) {
	p, msgs := allMessages(t)
	for _, m := range msgs {
		reject := func(what string, b []byte) {
			t.Helper()
			if _, err := m.decode(b); err == nil {
				t.Errorf("%s: %s accepted", m.name, what)
			} else if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: %s: error %v does not wrap ErrMalformed", m.name, what, err)
			}
		}
		reject("empty", nil)
		reject("trailing byte", append(bytes.Clone(m.b), 0))
		// Truncations: every length in the header region and a spread of others.
		for n := 0; n < len(m.b); n += 1 + n/3 {
			reject("truncated", m.b[:n])
		}
		reject("last byte cut", m.b[:len(m.b)-1])
		for i := 0; i < 6; i++ {
			b := bytes.Clone(m.b)
			b[i] ^= 0x40
			reject("header byte flipped", b)
		}
		for _, other := range msgs {
			if other.name != m.name {
				reject("a "+other.name, other.b)
			}
		}
	}
	// A coefficient that is not reduced modulo its prime is rejected.
	for _, m := range msgs {
		if m.name != "upload" {
			continue
		}
		b := bytes.Clone(m.b)
		off := uploadBodyOffset(b) + 8 + 8 // header, fields, signature, Lattigo row count and row length
		binary.LittleEndian.PutUint64(b[off:], p.moduli[0])
		if _, err := m.decode(b); !errors.Is(err, ErrMalformed) {
			t.Fatalf("unreduced coefficient: %v", err)
		}
		// A huge Lattigo row count must be refused before Lattigo allocates for it.
		b = bytes.Clone(m.b)
		binary.LittleEndian.PutUint64(b[uploadBodyOffset(b):], 1<<40)
		if _, err := m.decode(b); !errors.Is(err, ErrMalformed) {
			t.Fatalf("huge row count: %v", err)
		}
	}
}

func TestKeyMaterialSurvivesSaveAndLoad(t *testing.T) {
	p := testParams(t)
	committee := committeeIDs(3)
	setup, keys := runCeremony(t, p, committee, 2)
	// Save and reload every member's key material and the public setup.
	loaded := map[PartyID]*KeyMaterial{}
	for id, km := range keys {
		b, err := km.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if loaded[id], err = DecodeKeyMaterial(b); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(loaded[id].Names, km.Names) || len(km.Names) != 3 {
			t.Fatalf("names %q reloaded as %q", km.Names, loaded[id].Names)
		}
	}
	sb, _ := setup.MarshalBinary()
	setup2, err := DecodePublicSetup(sb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := setup2.Verify(testSimulation(t).Trust); err != nil {
		t.Fatalf("reloaded setup: %v", err)
	}
	r := randomRound(newRNG(5), 3, 20)
	agg, _, err := runRound(t, setup2, loaded, 9, 20, r.seq(nil), committee[1:])
	if err != nil {
		t.Fatal(err)
	}
	if e := maxAbsDiff(agg.Sum, r.sum); e > p.MaxAbsError(2) {
		t.Fatalf("error %.3g after reload", e)
	}
}

// ceremonyAtDirectory runs a ceremony of committee up to the directory.
func ceremonyAtDirectory(t *testing.T, p *Params, committee []PartyID, threshold int) (*Ceremony, *CeremonyServer, map[PartyID]*CeremonyMember, *Directory) {
	t.Helper()
	cer, err := NewCeremony(p, committee, threshold, crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	server, _ := NewCeremonyServer(cer)
	members := map[PartyID]*CeremonyMember{}
	for _, id := range committee {
		m, msg, err := JoinCeremony(cer, id, identityOf(t, id), testSimulation(t).Trust, crand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		members[id] = m
		if err := server.HandleCommitment(msg); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := server.Directory()
	if err != nil {
		t.Fatal(err)
	}
	return cer, server, members, dir
}

func TestCeremonyRejectsTamperingAndMisuse(t *testing.T) {
	p := testParams(t)
	trust := testSimulation(t).Trust
	committee := committeeIDs(3)
	cer, _ := NewCeremony(p, committee, 2, crand.Reader)
	server, _ := NewCeremonyServer(cer)
	members := map[PartyID]*CeremonyMember{}
	for i, id := range committee {
		m, msg, err := JoinCeremony(cer, id, identityOf(t, id), trust, crand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		members[id] = m
		if i == 2 {
			if _, err := server.Directory(); !errors.Is(err, ErrNotEnoughMembers) {
				t.Fatalf("directory with a member missing: %v", err)
			}
		}
		if err := server.HandleCommitment(msg); err != nil {
			t.Fatal(err)
		}
		if err := server.HandleCommitment(msg); err == nil {
			t.Fatal("duplicate commitment accepted")
		}
	}
	if _, _, err := JoinCeremony(cer, 42, identityOf(t, 42), trust, crand.Reader); err == nil {
		t.Fatal("non-member joined")
	}
	if _, _, err := JoinCeremony(cer, committee[0], identityOf(t, committee[0]), nil, crand.Reader); err == nil {
		t.Fatal("member joined without a trust root")
	}
	other := identityOf(t, committee[1])
	if _, _, err := JoinCeremony(cer, committee[0], Identity{Certificate: other.Certificate, Key: identityOf(t, committee[0]).Key}, trust, crand.Reader); err == nil {
		t.Fatal("member joined with a key that is not its certificate's")
	}
	dir, _ := server.Directory()
	var all []*SealedShare
	for _, id := range committee {
		r, s, err := members[id].HandleDirectory(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := server.HandleKeyGenShare(r); err != nil {
			t.Fatal(err)
		}
		if err := server.HandleKeyGenShare(r); err == nil {
			t.Fatal("duplicate public-key share accepted")
		}
		all = append(all, s...)
	}
	for _, s := range all {
		if err := server.HandleSealedShare(s); err != nil {
			t.Fatal(err)
		}
	}
	reveals, err := server.KeyGenShares()
	if err != nil {
		t.Fatal(err)
	}
	boxes, _ := server.SharesFor(committee[0])
	// A flipped byte in a box fails authentication.
	tampered := make([]*SealedShare, len(boxes))
	for i, b := range boxes {
		c := *b
		c.Box = bytes.Clone(b.Box)
		tampered[i] = &c
	}
	tampered[0].Box[len(tampered[0].Box)/2] ^= 1
	if _, _, err := members[committee[0]].HandleSealedShares(reveals, tampered); err == nil {
		t.Fatal("tampered share accepted")
	}
	// A box relabelled for another recipient does not open.
	others, _ := server.SharesFor(committee[1])
	relabelled := []*SealedShare{boxes[0], {Ceremony: others[0].Ceremony, From: others[1].From, To: committee[0], Box: others[1].Box}}
	if relabelled[1].From == boxes[0].From {
		relabelled[1].From = boxes[1].From
	}
	if _, _, err := members[committee[0]].HandleSealedShares(reveals, relabelled); err == nil {
		t.Fatal("relabelled share accepted")
	}
	if _, _, err := members[committee[0]].HandleSealedShares(reveals, boxes[:1]); err == nil {
		t.Fatal("missing share accepted")
	}
	// Public-key shares out of order, or one swapped for another polynomial.
	swapped := []*KeyGenShare{reveals[1], reveals[0], reveals[2]}
	if _, _, err := members[committee[0]].HandleSealedShares(swapped, boxes); err == nil {
		t.Fatal("public-key shares out of committee order accepted")
	}
	if _, _, err := members[committee[0]].HandleSealedShares(reveals, boxes); err != nil {
		t.Fatal(err)
	}
	if _, _, err := members[committee[0]].HandleSealedShares(reveals, boxes); err == nil {
		t.Fatal("second completion accepted")
	}
	if _, err := server.Setup(); !errors.Is(err, ErrNotEnoughMembers) {
		t.Fatalf("setup without the endorsements: %v", err)
	}
}

func TestBadParametersRejected(t *testing.T) {
	bad := []ParamsLiteral{
		{LogN: 11, LogQ: []int{50}, LogScale: 20, LogSmudging: 10},             // ring too small
		{LogN: 12, LogQ: []int{60, 60}, LogScale: 80, LogSmudging: 60},         // log Q 120 > 109: below 128 bits
		{LogN: 13, LogQ: []int{60, 60, 60, 60}, LogScale: 80, LogSmudging: 60}, // log Q 240 > 218
		{LogN: 13, LogQ: []int{60, 60}, LogScale: 119, LogSmudging: 60},        // no room for values
		{LogN: 13, LogQ: []int{61, 60}, LogScale: 80, LogSmudging: 60},         // prime too large for Lattigo
		{LogN: 13, LogQ: []int{60, 60}, LogScale: 0, LogSmudging: 60},          // no scale
		{LogN: 13, LogQ: []int{60, 60}, LogScale: 80, LogSmudging: 110},        // smudging too large
	}
	for _, lit := range bad {
		if _, err := NewParams(lit); err == nil {
			t.Errorf("%+v accepted", lit)
		}
	}
	p := DefaultParams()
	if p.SecurityBits() < 128 {
		t.Fatalf("default parameters give %d bits", p.SecurityBits())
	}
}

// TestPolyFormatMatchesLattigo pins the hand-written polynomial codec to Lattigo's
// Poly.MarshalBinary / UnmarshalBinary.
func TestPolyFormatMatchesLattigo(t *testing.T) {
	p := testParams(t)
	pol := p.rlwe.RingQ().NewPoly()
	rng := newRNG(11)
	for j, q := range p.moduli {
		for i := range pol.Coeffs[j] {
			pol.Coeffs[j][i] = rng.Uint64N(q)
		}
	}
	want, err := pol.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	e := &encoder{}
	if err := e.poly(pol); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.b, want) {
		t.Fatal("encoding differs from Lattigo's MarshalBinary")
	}
	var back ring.Poly
	readPoly(p, want, &back)
	if !back.Equal(&pol) {
		t.Fatal("decoding Lattigo's encoding gives another polynomial")
	}
}

// uploadBodyOffset is where an encoded upload's polynomials start: after the header, the
// fixed fields and the signature (two length-prefixed strings).
func uploadBodyOffset(b []byte) int {
	off := 6 + 16 + 8 + 8 + 4 + 4
	for range 2 {
		off += 4 + int(binary.BigEndian.Uint32(b[off:]))
	}
	return off
}
