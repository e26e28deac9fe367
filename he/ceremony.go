package he

import (
	"crypto/ecdh"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/multiparty"
	"github.com/tuneinsight/lattigo/v6/ring"
	"github.com/tuneinsight/lattigo/v6/utils/sampling"
)

// PartyID identifies a client (committee member or not). The engine maps its own client
// identifiers to PartyIDs; 0 is reserved as "nobody". A PartyID is only a label chosen by
// the server: who a party is, is the name its certificate carries.
type PartyID uint64

// CeremonyID names one key ceremony; every message of the ceremony and of the rounds
// run under its key carries it.
type CeremonyID [16]byte

// RunID names one run (128 random bits the server draws per run). It is carried in the
// ceremony and bound into every signed statement, so that no signature from another run is
// accepted.
type RunID [16]byte

// maxCommittee bounds the committee size (the ceremony relays K·(K−1) sealed shares).
const maxCommittee = 1024

// minThreshold: a threshold of one would let a single member decrypt alone.
const minThreshold = 2

// ErrNotEnoughMembers is returned when fewer than the threshold of committee members
// take part; nothing is decrypted.
var ErrNotEnoughMembers = errors.New("he: fewer committee members than the threshold")

// Ceremony is the public description of a key ceremony, chosen by the server and sent to
// every committee member: run, parameters, committee (in Shamir-point order: member i gets
// point i+1), threshold and the common reference string from which the public key's
// uniform polynomial is expanded.
type Ceremony struct {
	ID        CeremonyID
	Run       RunID
	Params    *Params
	Committee []PartyID
	Threshold int
	CRS       [32]byte
}

// NewCeremony draws a fresh ceremony ID, run ID and CRS from random (crypto/rand in real
// runs). A server that runs several ceremonies in one run may set Run afterwards.
func NewCeremony(params *Params, committee []PartyID, threshold int, random io.Reader) (*Ceremony, error) {
	c := &Ceremony{Params: params, Committee: slices.Clone(committee), Threshold: threshold}
	if _, err := io.ReadFull(random, c.ID[:]); err != nil {
		return nil, fmt.Errorf("he: ceremony id: %w", err)
	}
	if _, err := io.ReadFull(random, c.Run[:]); err != nil {
		return nil, fmt.Errorf("he: run id: %w", err)
	}
	if _, err := io.ReadFull(random, c.CRS[:]); err != nil {
		return nil, fmt.Errorf("he: ceremony reference string: %w", err)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Ceremony) validate() error {
	if c.Params == nil {
		return errors.New("he: ceremony without parameters")
	}
	k := len(c.Committee)
	if k < minThreshold || k > maxCommittee {
		return fmt.Errorf("he: committee of %d members outside [%d, %d]", k, minThreshold, maxCommittee)
	}
	if c.Threshold < minThreshold || c.Threshold > k {
		return fmt.Errorf("he: threshold %d outside [%d, committee size %d]", c.Threshold, minThreshold, k)
	}
	seen := make(map[PartyID]bool, k)
	for _, id := range c.Committee {
		if id == 0 {
			return errors.New("he: committee member with reserved id 0")
		}
		if seen[id] {
			return fmt.Errorf("he: committee member %d listed twice", id)
		}
		seen[id] = true
	}
	return nil
}

// index returns the committee position of id, or −1.
func (c *Ceremony) index(id PartyID) int { return slices.Index(c.Committee, id) }

// Digest binds the whole ceremony description (run, id, parameters, committee, threshold,
// reference string): members sign it, so no two views of a ceremony can share a signature.
func (c *Ceremony) Digest() [32]byte {
	e := &encoder{}
	c.encodeTo(e)
	return sha256.Sum256(append([]byte("shoal/he/v2 ceremony\x00"), e.b...))
}

// ApprovalQuorum is how many committee members must approve a round's contributor set
// before any member releases a decryption share: ⌈(K+T)/2⌉. Two quorums then share at least
// T members, so with at most T−1 members colluding with the server, some honest member is in
// both, and it approves only one set per round: the server can never have two different
// sets of the same round decrypted (and subtract them).
func ApprovalQuorum(committee, threshold int) int { return (committee + threshold + 1) / 2 }

func shamirPoint(index int) multiparty.ShamirPublicPoint {
	return multiparty.ShamirPublicPoint(index + 1)
}

func (c *Ceremony) crp() multiparty.PublicKeyGenCRP {
	crs, err := sampling.NewKeyedPRNG(c.CRS[:])
	if err != nil { // only fails on an empty key
		panic(fmt.Sprintf("he: keyed PRNG: %v", err))
	}
	return multiparty.NewPublicKeyGenProtocol(c.Params.rlwe).SampleCRP(crs)
}

// KeyCommitment is a member's first message: its ephemeral X25519 key for receiving
// secret-key shares and a hash committing to its share of the collective public key,
// signed with its identity. The share itself is revealed only once every member has
// committed, so no member can choose its share after seeing the others' (a rogue key that
// would cancel them and hand the collective key to the server).
type KeyCommitment struct {
	Ceremony    CeremonyID
	From        PartyID
	ExchangeKey [32]byte
	ShareHash   [32]byte // SHA-256 of the encoded public-key share
	Signature   Signature
}

func (m *KeyCommitment) digest(c *Ceremony) [32]byte {
	d := c.Digest()
	return newStatement(stmtCommitment, c.Run).bytes(d[:]).u64(uint64(m.From)).
		bytes(m.ExchangeKey[:]).bytes(m.ShareHash[:]).sum()
}

// Directory is the server's broadcast once every member committed: all commitments, in
// committee order. Each is signed by its member, so the server cannot substitute an
// exchange key (to open the sealed shares) or a member.
type Directory struct {
	Ceremony    CeremonyID
	Commitments []*KeyCommitment
}

// KeyGenShare reveals a member's share of the collective public key, −a·s_i + e_i with a
// expanded from the CRS (Mouchet et al. 2021, protocol CKG); it must match the member's
// commitment.
type KeyGenShare struct {
	Ceremony       CeremonyID
	From           PartyID
	PublicKeyShare ring.Poly
}

func hashPoly(p ring.Poly) [32]byte {
	e := &encoder{}
	_ = e.poly(p)
	return sha256.Sum256(e.b)
}

// SealedShare is one member's Shamir share of its secret, encrypted end to end for one
// other member; the server relays it and cannot read it.
type SealedShare struct {
	Ceremony CeremonyID
	From, To PartyID
	Box      []byte
}

// Endorsement is a member's signature on the collective public key it computed itself
// from the revealed shares (its own among them) and on the committee's names: clients
// encrypt only under a key every member endorsed.
type Endorsement struct {
	Ceremony  CeremonyID
	From      PartyID
	Signature Signature
}

// CeremonyMember is a committee member's side of the key ceremony.
type CeremonyMember struct {
	cer       *Ceremony
	self      PartyID
	index     int
	random    io.Reader
	id        Identity
	ver       *verifier
	sk        *rlwe.SecretKey
	exchange  *ecdh.PrivateKey
	share     ring.Poly // this member's public-key share, revealed after the directory
	commit    *KeyCommitment
	exchanges [][32]byte // verified exchange keys, committee order
	hashes    [][32]byte // verified share commitments, committee order
	names     []string   // certified names, committee order
	own       multiparty.ShamirSecretShare
	stage     int
}

// JoinCeremony starts member self's side of the ceremony and returns its signed
// commitment. id is the member's own identity and trust its own trust root (never the
// server's). random feeds the exchange key and nonces (crypto/rand in real runs); the RLWE
// secret is drawn by Lattigo from crypto/rand.
func JoinCeremony(c *Ceremony, self PartyID, id Identity, trust Trust, random io.Reader) (*CeremonyMember, *KeyCommitment, error) {
	if err := c.validate(); err != nil {
		return nil, nil, err
	}
	idx := c.index(self)
	if idx < 0 {
		return nil, nil, fmt.Errorf("he: party %d is not on the committee", self)
	}
	if err := id.check(); err != nil {
		return nil, nil, err
	}
	ver, err := newVerifier(trust)
	if err != nil {
		return nil, nil, err
	}
	xk, err := ecdh.X25519().GenerateKey(random)
	if err != nil {
		return nil, nil, fmt.Errorf("he: exchange key: %w", err)
	}
	rp := c.Params.rlwe
	sk := rlwe.NewKeyGenerator(rp).GenSecretKeyNew()
	ckg := multiparty.NewPublicKeyGenProtocol(rp)
	share := ckg.AllocateShare()
	ckg.GenShare(sk, c.crp(), &share)
	msg := &KeyCommitment{Ceremony: c.ID, From: self, ShareHash: hashPoly(share.Value.Q)}
	copy(msg.ExchangeKey[:], xk.PublicKey().Bytes())
	if msg.Signature, err = id.sign(msg.digest(c)); err != nil {
		return nil, nil, err
	}
	m := &CeremonyMember{cer: c, self: self, index: idx, random: random, id: id, ver: ver, sk: sk, exchange: xk,
		share: share.Value.Q, commit: msg, stage: 1}
	return m, msg, nil
}

// HandleDirectory verifies the directory — one commitment per committee member, in order,
// each signed by a distinct party certified by this member's trust root, this member's own
// unchanged — and returns this member's share reveal and its sealed Shamir shares, one for
// every other member.
func (m *CeremonyMember) HandleDirectory(d *Directory) (*KeyGenShare, []*SealedShare, error) {
	if d == nil {
		return nil, nil, errors.New("he: nil directory")
	}
	if m.stage != 1 {
		return nil, nil, errors.New("he: directory received out of order")
	}
	c := m.cer
	if d.Ceremony != c.ID {
		return nil, nil, errors.New("he: directory for another ceremony")
	}
	if len(d.Commitments) != len(c.Committee) {
		return nil, nil, fmt.Errorf("he: directory lists %d commitments for %d members", len(d.Commitments), len(c.Committee))
	}
	names := make([]string, len(c.Committee))
	exchanges := make([][32]byte, len(c.Committee))
	hashes := make([][32]byte, len(c.Committee))
	seen := map[string]bool{}
	for j, cm := range d.Commitments {
		if cm == nil || cm.Ceremony != c.ID || cm.From != c.Committee[j] {
			return nil, nil, fmt.Errorf("he: directory entry %d is not member %d's commitment to this ceremony", j, c.Committee[j])
		}
		if j == m.index {
			own := m.commit
			if cm.ExchangeKey != own.ExchangeKey || cm.ShareHash != own.ShareHash || !sameSignature(cm.Signature, own.Signature) {
				return nil, nil, untrusted("the directory does not carry this member's own commitment")
			}
		}
		name, err := m.ver.verify(cm.Signature, cm.digest(c))
		if err != nil {
			return nil, nil, fmt.Errorf("he: commitment of member %d: %w", cm.From, err)
		}
		if seen[name] {
			return nil, nil, untrusted("party %q holds two committee seats", name)
		}
		seen[name] = true
		if _, err := ecdh.X25519().NewPublicKey(cm.ExchangeKey[:]); err != nil {
			return nil, nil, fmt.Errorf("he: exchange key of member %d: %w", cm.From, err)
		}
		names[j], exchanges[j], hashes[j] = name, cm.ExchangeKey, cm.ShareHash
	}
	thr := multiparty.NewThresholdizer(c.Params.rlwe)
	poly, err := thr.GenShamirPolynomial(c.Threshold, m.sk)
	if err != nil {
		return nil, nil, fmt.Errorf("he: shamir polynomial: %w", err)
	}
	out := make([]*SealedShare, 0, len(c.Committee)-1)
	share := thr.AllocateThresholdSecretShare()
	for j, to := range c.Committee {
		thr.GenShamirSecretShare(shamirPoint(j), poly, &share)
		if j == m.index {
			m.own = multiparty.ShamirSecretShare{Poly: *share.Poly.CopyNew()}
			continue
		}
		pub, err := ecdh.X25519().NewPublicKey(exchanges[j][:])
		if err != nil {
			return nil, nil, fmt.Errorf("he: exchange key of member %d: %w", to, err)
		}
		enc := &encoder{}
		if err := enc.poly(share.Q); err != nil {
			return nil, nil, err
		}
		box, err := seal(c.ID, m.self, to, m.exchange, pub, enc.b, m.random)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, &SealedShare{Ceremony: c.ID, From: m.self, To: to, Box: box})
	}
	m.names, m.exchanges, m.hashes = names, exchanges, hashes
	m.sk = nil // the threshold share replaces the additive secret from here on
	m.stage = 2
	return &KeyGenShare{Ceremony: c.ID, From: m.self, PublicKeyShare: m.share}, out, nil
}

// HandleSealedShares checks every member's revealed public-key share against its
// commitment, computes the collective public key from them, opens the K−1 sealed shares
// addressed to this member, and returns its key material and its endorsement of the
// public key. The member should store the key material (it holds a secret).
func (m *CeremonyMember) HandleSealedShares(reveals []*KeyGenShare, shares []*SealedShare) (*KeyMaterial, *Endorsement, error) {
	if m.stage != 2 {
		return nil, nil, errors.New("he: sealed shares received out of order")
	}
	c := m.cer
	p := c.Params
	if len(reveals) != len(c.Committee) {
		return nil, nil, fmt.Errorf("he: got %d public-key shares, want %d", len(reveals), len(c.Committee))
	}
	ckg := multiparty.NewPublicKeyGenProtocol(p.rlwe)
	sum := ckg.AllocateShare()
	for j, r := range reveals {
		if r == nil || r.Ceremony != c.ID || r.From != c.Committee[j] {
			return nil, nil, fmt.Errorf("he: public-key share %d is not member %d's", j, c.Committee[j])
		}
		if err := checkPolyValues(p, r.PublicKeyShare); err != nil {
			return nil, nil, fmt.Errorf("he: public-key share of member %d: %w", r.From, err)
		}
		if hashPoly(r.PublicKeyShare) != m.hashes[j] {
			return nil, nil, untrusted("public-key share of member %d does not match its commitment", r.From)
		}
		sh := multiparty.PublicKeyGenShare{Value: *sum.Value.CopyNew()}
		sh.Value.Q.Copy(r.PublicKeyShare)
		ckg.AggregateShares(sum, sh, &sum)
	}
	if len(shares) != len(c.Committee)-1 {
		return nil, nil, fmt.Errorf("he: got %d sealed shares, want %d", len(shares), len(c.Committee)-1)
	}
	thr := multiparty.NewThresholdizer(p.rlwe)
	agg := multiparty.ShamirSecretShare{Poly: *m.own.Poly.CopyNew()}
	got := make(map[PartyID]bool, len(shares))
	for _, s := range shares {
		if s == nil {
			return nil, nil, errors.New("he: nil sealed share")
		}
		if s.Ceremony != c.ID || s.To != m.self {
			return nil, nil, fmt.Errorf("he: sealed share from %d not addressed to member %d of this ceremony", s.From, m.self)
		}
		j := c.index(s.From)
		if j < 0 || j == m.index || got[s.From] {
			return nil, nil, fmt.Errorf("he: unexpected sealed share from %d", s.From)
		}
		got[s.From] = true
		pub, err := ecdh.X25519().NewPublicKey(m.exchanges[j][:])
		if err != nil {
			return nil, nil, fmt.Errorf("he: exchange key of member %d: %w", s.From, err)
		}
		plain, err := open(c.ID, s.From, m.self, m.exchange, pub, s.Box)
		if err != nil {
			return nil, nil, err
		}
		if err := checkPoly(p, plain); err != nil {
			return nil, nil, fmt.Errorf("he: share from member %d: %w", s.From, err)
		}
		var sh multiparty.ShamirSecretShare
		readPoly(p, plain, &sh.Q)
		if err := thr.AggregateShares(agg, sh, &agg); err != nil {
			return nil, nil, fmt.Errorf("he: aggregating share from member %d: %w", s.From, err)
		}
	}
	pk := rlwe.NewPublicKey(p.rlwe)
	ckg.GenPublicKey(sum, c.crp(), pk)
	setup := &PublicSetup{Ceremony: *c, PublicKey: pk}
	e := &Endorsement{Ceremony: c.ID, From: m.self}
	var err error
	if e.Signature, err = m.id.sign(setup.endorsementDigest(m.self, m.names)); err != nil {
		return nil, nil, err
	}
	m.stage = 3
	m.exchange = nil
	return &KeyMaterial{Setup: setup, Self: m.self, Names: slices.Clone(m.names), share: agg}, e, nil
}

func publicKeyFromPolys(p *Params, polys [2]ring.Poly) (*rlwe.PublicKey, error) {
	pk := rlwe.NewPublicKey(p.rlwe)
	for i := range polys {
		if err := checkPolyValues(p, polys[i]); err != nil {
			return nil, fmt.Errorf("he: public key: %w", err)
		}
		pk.Value[i].Q.Copy(polys[i])
	}
	return pk, nil
}

// CeremonyServer is the server's side of the key ceremony: it relays commitments, public-key
// shares, sealed shares it cannot open and endorsements, and assembles the public setup.
type CeremonyServer struct {
	cer          *Ceremony
	ckg          multiparty.PublicKeyGenProtocol
	crp          multiparty.PublicKeyGenCRP
	agg          multiparty.PublicKeyGenShare
	commitments  []*KeyCommitment
	nCommitted   int
	dir          *Directory
	reveals      []*KeyGenShare
	nRevealed    int
	pk           *rlwe.PublicKey
	sealed       map[PartyID]map[PartyID]*SealedShare // to → from → box
	nSealed      int
	endorsements []Signature
	nEndorsed    int
}

// NewCeremonyServer starts the server's side of ceremony c.
func NewCeremonyServer(c *Ceremony) (*CeremonyServer, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	k := len(c.Committee)
	ckg := multiparty.NewPublicKeyGenProtocol(c.Params.rlwe)
	s := &CeremonyServer{
		cer: c, ckg: ckg, crp: c.crp(), agg: ckg.AllocateShare(),
		commitments: make([]*KeyCommitment, k), reveals: make([]*KeyGenShare, k), endorsements: make([]Signature, k),
		sealed: make(map[PartyID]map[PartyID]*SealedShare, k),
	}
	return s, nil
}

// HandleCommitment records one member's commitment. The server does not check the
// signature (the members do); it only keeps the directory well formed.
func (s *CeremonyServer) HandleCommitment(m *KeyCommitment) error {
	c := s.cer
	if m == nil {
		return errors.New("he: nil key commitment")
	}
	if s.dir != nil {
		return errors.New("he: key commitment after the directory")
	}
	if m.Ceremony != c.ID {
		return errors.New("he: key commitment for another ceremony")
	}
	j := c.index(m.From)
	if j < 0 {
		return fmt.Errorf("he: key commitment from non-member %d", m.From)
	}
	if s.commitments[j] != nil {
		return fmt.Errorf("he: duplicate key commitment from member %d", m.From)
	}
	if _, err := ecdh.X25519().NewPublicKey(m.ExchangeKey[:]); err != nil {
		return fmt.Errorf("he: exchange key of member %d: %w", m.From, err)
	}
	s.commitments[j] = m
	s.nCommitted++
	return nil
}

// Missing lists the committee members whose commitment has not arrived.
func (s *CeremonyServer) Missing() []PartyID {
	var out []PartyID
	for j, m := range s.commitments {
		if m == nil {
			out = append(out, s.cer.Committee[j])
		}
	}
	return out
}

// Directory returns the broadcast for all members once every commitment has arrived. A
// ceremony needs every member: if one is missing, run a new ceremony without it.
func (s *CeremonyServer) Directory() (*Directory, error) {
	if s.nCommitted != len(s.cer.Committee) {
		return nil, fmt.Errorf("%w: key commitments missing from %v", ErrNotEnoughMembers, s.Missing())
	}
	if s.dir == nil {
		s.dir = &Directory{Ceremony: s.cer.ID, Commitments: slices.Clone(s.commitments)}
	}
	return s.dir, nil
}

// HandleKeyGenShare records one member's revealed public-key share, which must match its
// commitment.
func (s *CeremonyServer) HandleKeyGenShare(m *KeyGenShare) error {
	c := s.cer
	if m == nil {
		return errors.New("he: nil key generation share")
	}
	if s.dir == nil {
		return errors.New("he: key generation share before the directory")
	}
	if m.Ceremony != c.ID {
		return errors.New("he: key generation share for another ceremony")
	}
	j := c.index(m.From)
	if j < 0 {
		return fmt.Errorf("he: key generation share from non-member %d", m.From)
	}
	if s.reveals[j] != nil {
		return fmt.Errorf("he: duplicate key generation share from member %d", m.From)
	}
	if err := checkPolyValues(c.Params, m.PublicKeyShare); err != nil {
		return fmt.Errorf("he: key generation share from member %d: %w", m.From, err)
	}
	if hashPoly(m.PublicKeyShare) != s.commitments[j].ShareHash {
		return fmt.Errorf("he: key generation share from member %d does not match its commitment", m.From)
	}
	share := multiparty.PublicKeyGenShare{Value: *s.agg.Value.CopyNew()}
	share.Value.Q.Copy(m.PublicKeyShare)
	s.ckg.AggregateShares(s.agg, share, &s.agg)
	s.reveals[j] = m
	s.nRevealed++
	return nil
}

// KeyGenShares returns every member's revealed public-key share, in committee order, once
// all arrived: each member recomputes the collective public key from them.
func (s *CeremonyServer) KeyGenShares() ([]*KeyGenShare, error) {
	if s.nRevealed != len(s.cer.Committee) {
		return nil, fmt.Errorf("%w: %d of %d public-key shares revealed", ErrNotEnoughMembers, s.nRevealed, len(s.cer.Committee))
	}
	if s.pk == nil {
		s.pk = rlwe.NewPublicKey(s.cer.Params.rlwe)
		s.ckg.GenPublicKey(s.agg, s.crp, s.pk)
	}
	return slices.Clone(s.reveals), nil
}

// HandleSealedShare queues one sealed share for its recipient.
func (s *CeremonyServer) HandleSealedShare(m *SealedShare) error {
	c := s.cer
	if m == nil {
		return errors.New("he: nil sealed share")
	}
	if s.dir == nil {
		return errors.New("he: sealed share before the directory")
	}
	if m.Ceremony != c.ID {
		return errors.New("he: sealed share for another ceremony")
	}
	if c.index(m.From) < 0 || c.index(m.To) < 0 || m.From == m.To {
		return fmt.Errorf("he: sealed share from %d to %d is not between two members", m.From, m.To)
	}
	box := s.sealed[m.To]
	if box == nil {
		box = make(map[PartyID]*SealedShare)
		s.sealed[m.To] = box
	}
	if box[m.From] != nil {
		return fmt.Errorf("he: duplicate sealed share from %d to %d", m.From, m.To)
	}
	box[m.From] = m
	s.nSealed++
	return nil
}

// SharesFor returns the K−1 sealed shares addressed to member `to`, once all arrived.
func (s *CeremonyServer) SharesFor(to PartyID) ([]*SealedShare, error) {
	c := s.cer
	if c.index(to) < 0 {
		return nil, fmt.Errorf("he: %d is not a committee member", to)
	}
	box := s.sealed[to]
	if len(box) != len(c.Committee)-1 {
		return nil, fmt.Errorf("%w: member %d has %d of %d sealed shares", ErrNotEnoughMembers, to, len(box), len(c.Committee)-1)
	}
	out := make([]*SealedShare, 0, len(box))
	for _, from := range c.Committee {
		if from != to {
			out = append(out, box[from])
		}
	}
	return out, nil
}

// HandleEndorsement records one member's endorsement of the public key. The clients verify
// it; the server only keeps the setup well formed.
func (s *CeremonyServer) HandleEndorsement(e *Endorsement) error {
	c := s.cer
	if e == nil {
		return errors.New("he: nil endorsement")
	}
	if e.Ceremony != c.ID {
		return errors.New("he: endorsement for another ceremony")
	}
	j := c.index(e.From)
	if j < 0 {
		return fmt.Errorf("he: endorsement from non-member %d", e.From)
	}
	if s.endorsements[j].Value != nil {
		return fmt.Errorf("he: duplicate endorsement from member %d", e.From)
	}
	if len(e.Signature.Value) == 0 {
		return fmt.Errorf("he: empty endorsement from member %d", e.From)
	}
	s.endorsements[j] = e.Signature
	s.nEndorsed++
	return nil
}

// Setup returns the public material every client needs once every member has endorsed the
// public key (that is when the threshold key exists).
func (s *CeremonyServer) Setup() (*PublicSetup, error) {
	k := len(s.cer.Committee)
	if s.pk == nil || s.nSealed != k*(k-1) || s.nEndorsed != k {
		return nil, fmt.Errorf("%w: ceremony incomplete (%d of %d sealed shares, %d of %d endorsements)",
			ErrNotEnoughMembers, s.nSealed, k*(k-1), s.nEndorsed, k)
	}
	return &PublicSetup{Ceremony: *s.cer, PublicKey: s.pk.CopyNew(), Endorsements: slices.Clone(s.endorsements)}, nil
}

// PublicSetup is what every client and the server hold after the ceremony: the public
// ceremony description, the collective public key and every member's endorsement of both.
// It holds no secret.
type PublicSetup struct {
	Ceremony     Ceremony
	PublicKey    *rlwe.PublicKey
	Endorsements []Signature // one per member, committee order; none in a member's KeyMaterial
}

// Params returns the parameter set of the setup.
func (s *PublicSetup) Params() *Params { return s.Ceremony.Params }

// Digest binds the ceremony and the public key: what clients' uploads and members'
// approvals are signed under.
func (s *PublicSetup) Digest() [32]byte {
	h := sha256.New()
	h.Write([]byte("shoal/he/v2 setup\x00"))
	d := s.Ceremony.Digest()
	h.Write(d[:])
	e := &encoder{}
	_ = e.polys(s.PublicKey.Value[0].Q, s.PublicKey.Value[1].Q)
	h.Write(e.b)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func (s *PublicSetup) endorsementDigest(from PartyID, names []string) [32]byte {
	d, n := s.Digest(), namesDigest(names)
	return newStatement(stmtEndorsement, s.Ceremony.Run).bytes(d[:]).u64(uint64(from)).bytes(n[:]).sum()
}

// Verify checks the setup against the verifier's own trust root: a valid ceremony, and
// one endorsement per committee member, in order, by distinct certified parties, each
// signing this public key and this list of names. It returns the members' names. A client
// must verify the setup before encrypting under it: otherwise the server could substitute a
// key of its own.
func (s *PublicSetup) Verify(trust Trust) ([]string, error) {
	ver, err := newVerifier(trust)
	if err != nil {
		return nil, err
	}
	return s.verify(ver)
}

func (s *PublicSetup) verify(ver *verifier) ([]string, error) {
	c := &s.Ceremony
	if err := c.validate(); err != nil {
		return nil, err
	}
	if s.PublicKey == nil {
		return nil, errors.New("he: setup without a public key")
	}
	if len(s.Endorsements) != len(c.Committee) {
		return nil, untrusted("setup carries %d endorsements for %d members", len(s.Endorsements), len(c.Committee))
	}
	names := make([]string, len(c.Committee))
	seen := map[string]bool{}
	for j, e := range s.Endorsements {
		name, _, err := ver.identify(e.Certificate)
		if err != nil {
			return nil, fmt.Errorf("he: endorsement of member %d: %w", c.Committee[j], err)
		}
		if seen[name] {
			return nil, untrusted("party %q holds two committee seats", name)
		}
		seen[name] = true
		names[j] = name
	}
	for j, e := range s.Endorsements {
		if _, err := ver.verify(e, s.endorsementDigest(c.Committee[j], names)); err != nil {
			return nil, fmt.Errorf("he: endorsement of member %d: %w", c.Committee[j], err)
		}
	}
	return names, nil
}

// KeyMaterial is a committee member's saved state: the public setup (without the other
// members' endorsements), the committee's certified names as this member verified them, and
// its Shamir share of the collective secret key. It is secret; its owner keeps it.
type KeyMaterial struct {
	Setup *PublicSetup
	Self  PartyID
	Names []string // committee order
	share multiparty.ShamirSecretShare
}
