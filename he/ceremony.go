package he

import (
	"crypto/ecdh"
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
// identifiers to PartyIDs; 0 is reserved as "nobody".
type PartyID uint64

// CeremonyID names one key ceremony; every message of the ceremony and of the rounds
// run under its key carries it.
type CeremonyID [16]byte

// maxCommittee bounds the committee size (the ceremony relays K·(K−1) sealed shares).
const maxCommittee = 1024

// minThreshold: a threshold of one would let a single member decrypt alone.
const minThreshold = 2

// ErrNotEnoughMembers is returned when fewer than the threshold of committee members
// take part; nothing is decrypted.
var ErrNotEnoughMembers = errors.New("he: fewer committee members than the threshold")

// Ceremony is the public description of a key ceremony, chosen by the server and sent to
// every committee member: parameters, committee (in Shamir-point order: member i gets
// point i+1), threshold and the common reference string from which the public key's
// uniform polynomial is expanded.
type Ceremony struct {
	ID        CeremonyID
	Params    *Params
	Committee []PartyID
	Threshold int
	CRS       [32]byte
}

// NewCeremony draws a fresh ceremony ID and CRS from random (crypto/rand in real runs).
func NewCeremony(params *Params, committee []PartyID, threshold int, random io.Reader) (*Ceremony, error) {
	c := &Ceremony{Params: params, Committee: slices.Clone(committee), Threshold: threshold}
	if _, err := io.ReadFull(random, c.ID[:]); err != nil {
		return nil, fmt.Errorf("he: ceremony id: %w", err)
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

// KeyGenShare is a member's first message: its share of the collective public key and
// its ephemeral X25519 key for receiving secret-key shares.
type KeyGenShare struct {
	Ceremony       CeremonyID
	From           PartyID
	ExchangeKey    [32]byte
	PublicKeyShare ring.Poly
}

// Directory is the server's broadcast after all key-generation shares arrived: the
// collective public key and every member's exchange key, in committee order.
type Directory struct {
	Ceremony     CeremonyID
	ExchangeKeys [][32]byte
	PublicKey    [2]ring.Poly
}

// SealedShare is one member's Shamir share of its secret, encrypted end to end for one
// other member; the server relays it and cannot read it.
type SealedShare struct {
	Ceremony CeremonyID
	From, To PartyID
	Box      []byte
}

// CeremonyMember is a committee member's side of the key ceremony.
type CeremonyMember struct {
	cer      *Ceremony
	self     PartyID
	index    int
	random   io.Reader
	sk       *rlwe.SecretKey
	exchange *ecdh.PrivateKey
	dir      *Directory
	own      multiparty.ShamirSecretShare
	stage    int
}

// JoinCeremony starts member self's side of the ceremony and returns its first message.
// random feeds the exchange key and nonces (crypto/rand in real runs); the RLWE secret
// is drawn by Lattigo from crypto/rand.
func JoinCeremony(c *Ceremony, self PartyID, random io.Reader) (*CeremonyMember, *KeyGenShare, error) {
	if err := c.validate(); err != nil {
		return nil, nil, err
	}
	idx := c.index(self)
	if idx < 0 {
		return nil, nil, fmt.Errorf("he: party %d is not on the committee", self)
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
	msg := &KeyGenShare{Ceremony: c.ID, From: self, PublicKeyShare: share.Value.Q}
	copy(msg.ExchangeKey[:], xk.PublicKey().Bytes())
	m := &CeremonyMember{cer: c, self: self, index: idx, random: random, sk: sk, exchange: xk, stage: 1}
	return m, msg, nil
}

// HandleDirectory checks the server's directory and returns this member's sealed Shamir
// shares, one for every other member.
func (m *CeremonyMember) HandleDirectory(d *Directory) ([]*SealedShare, error) {
	if d == nil {
		return nil, errors.New("he: nil directory")
	}
	if m.stage != 1 {
		return nil, errors.New("he: directory received out of order")
	}
	c := m.cer
	if d.Ceremony != c.ID {
		return nil, errors.New("he: directory for another ceremony")
	}
	if len(d.ExchangeKeys) != len(c.Committee) {
		return nil, fmt.Errorf("he: directory lists %d exchange keys for %d members", len(d.ExchangeKeys), len(c.Committee))
	}
	if string(d.ExchangeKeys[m.index][:]) != string(m.exchange.PublicKey().Bytes()) {
		return nil, errors.New("he: directory does not carry this member's exchange key")
	}
	thr := multiparty.NewThresholdizer(c.Params.rlwe)
	poly, err := thr.GenShamirPolynomial(c.Threshold, m.sk)
	if err != nil {
		return nil, fmt.Errorf("he: shamir polynomial: %w", err)
	}
	out := make([]*SealedShare, 0, len(c.Committee)-1)
	share := thr.AllocateThresholdSecretShare()
	for j, to := range c.Committee {
		thr.GenShamirSecretShare(shamirPoint(j), poly, &share)
		if j == m.index {
			m.own = multiparty.ShamirSecretShare{Poly: *share.Poly.CopyNew()}
			continue
		}
		pub, err := ecdh.X25519().NewPublicKey(d.ExchangeKeys[j][:])
		if err != nil {
			return nil, fmt.Errorf("he: exchange key of member %d: %w", to, err)
		}
		enc := &encoder{}
		if err := enc.poly(share.Q); err != nil {
			return nil, err
		}
		plain := enc.b
		box, err := seal(c.ID, m.self, to, m.exchange, pub, plain, m.random)
		if err != nil {
			return nil, err
		}
		out = append(out, &SealedShare{Ceremony: c.ID, From: m.self, To: to, Box: box})
	}
	m.dir = d
	m.sk = nil // the threshold share replaces the additive secret from here on
	m.stage = 2
	return out, nil
}

// HandleSealedShares opens the K−1 shares addressed to this member and returns its key
// material. The member should store it (it holds a secret) so the ceremony is not rerun.
func (m *CeremonyMember) HandleSealedShares(shares []*SealedShare) (*KeyMaterial, error) {
	if m.stage != 2 {
		return nil, errors.New("he: sealed shares received out of order")
	}
	c := m.cer
	p := c.Params
	if len(shares) != len(c.Committee)-1 {
		return nil, fmt.Errorf("he: got %d sealed shares, want %d", len(shares), len(c.Committee)-1)
	}
	thr := multiparty.NewThresholdizer(p.rlwe)
	agg := multiparty.ShamirSecretShare{Poly: *m.own.Poly.CopyNew()}
	got := make(map[PartyID]bool, len(shares))
	for _, s := range shares {
		if s == nil {
			return nil, errors.New("he: nil sealed share")
		}
		if s.Ceremony != c.ID || s.To != m.self {
			return nil, fmt.Errorf("he: sealed share from %d not addressed to member %d of this ceremony", s.From, m.self)
		}
		j := c.index(s.From)
		if j < 0 || j == m.index || got[s.From] {
			return nil, fmt.Errorf("he: unexpected sealed share from %d", s.From)
		}
		got[s.From] = true
		pub, err := ecdh.X25519().NewPublicKey(m.dir.ExchangeKeys[j][:])
		if err != nil {
			return nil, fmt.Errorf("he: exchange key of member %d: %w", s.From, err)
		}
		plain, err := open(c.ID, s.From, m.self, m.exchange, pub, s.Box)
		if err != nil {
			return nil, err
		}
		if err := checkPoly(p, plain); err != nil {
			return nil, fmt.Errorf("he: share from member %d: %w", s.From, err)
		}
		var sh multiparty.ShamirSecretShare
		readPoly(p, plain, &sh.Q)
		if err := thr.AggregateShares(agg, sh, &agg); err != nil {
			return nil, fmt.Errorf("he: aggregating share from member %d: %w", s.From, err)
		}
	}
	pk, err := publicKeyFromPolys(p, m.dir.PublicKey)
	if err != nil {
		return nil, err
	}
	setup := &PublicSetup{Ceremony: *c, PublicKey: pk}
	m.stage = 3
	m.exchange = nil
	return &KeyMaterial{Setup: setup, Self: m.self, share: agg}, nil
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

// CeremonyServer is the server's side of the key ceremony: it aggregates public-key
// shares and relays sealed shares it cannot open.
type CeremonyServer struct {
	cer      *Ceremony
	ckg      multiparty.PublicKeyGenProtocol
	crp      multiparty.PublicKeyGenCRP
	agg      multiparty.PublicKeyGenShare
	keys     [][32]byte
	received []bool
	nShares  int
	dir      *Directory
	sealed   map[PartyID]map[PartyID]*SealedShare // to → from → box
	nSealed  int
}

// NewCeremonyServer starts the server's side of ceremony c.
func NewCeremonyServer(c *Ceremony) (*CeremonyServer, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	ckg := multiparty.NewPublicKeyGenProtocol(c.Params.rlwe)
	s := &CeremonyServer{
		cer: c, ckg: ckg, crp: c.crp(), agg: ckg.AllocateShare(),
		keys: make([][32]byte, len(c.Committee)), received: make([]bool, len(c.Committee)),
		sealed: make(map[PartyID]map[PartyID]*SealedShare, len(c.Committee)),
	}
	return s, nil
}

// HandleKeyGenShare records one member's first message.
func (s *CeremonyServer) HandleKeyGenShare(m *KeyGenShare) error {
	c := s.cer
	if m == nil {
		return errors.New("he: nil key generation share")
	}
	if m.Ceremony != c.ID {
		return errors.New("he: key generation share for another ceremony")
	}
	j := c.index(m.From)
	if j < 0 {
		return fmt.Errorf("he: key generation share from non-member %d", m.From)
	}
	if s.received[j] {
		return fmt.Errorf("he: duplicate key generation share from member %d", m.From)
	}
	if err := checkPolyValues(c.Params, m.PublicKeyShare); err != nil {
		return fmt.Errorf("he: key generation share from member %d: %w", m.From, err)
	}
	if _, err := ecdh.X25519().NewPublicKey(m.ExchangeKey[:]); err != nil {
		return fmt.Errorf("he: exchange key of member %d: %w", m.From, err)
	}
	share := multiparty.PublicKeyGenShare{Value: *s.agg.Value.CopyNew()}
	share.Value.Q.Copy(m.PublicKeyShare)
	s.ckg.AggregateShares(s.agg, share, &s.agg)
	s.keys[j] = m.ExchangeKey
	s.received[j] = true
	s.nShares++
	return nil
}

// Missing lists the committee members whose key-generation share has not arrived.
func (s *CeremonyServer) Missing() []PartyID {
	var out []PartyID
	for j, ok := range s.received {
		if !ok {
			out = append(out, s.cer.Committee[j])
		}
	}
	return out
}

// Directory returns the broadcast for all members once every share has arrived. A
// ceremony needs every member: if one is missing, run a new ceremony without it.
func (s *CeremonyServer) Directory() (*Directory, error) {
	if s.nShares != len(s.cer.Committee) {
		return nil, fmt.Errorf("%w: key generation shares missing from %v", ErrNotEnoughMembers, s.Missing())
	}
	if s.dir == nil {
		pk := rlwe.NewPublicKey(s.cer.Params.rlwe)
		s.ckg.GenPublicKey(s.agg, s.crp, pk)
		s.dir = &Directory{Ceremony: s.cer.ID, ExchangeKeys: slices.Clone(s.keys),
			PublicKey: [2]ring.Poly{*pk.Value[0].Q.CopyNew(), *pk.Value[1].Q.CopyNew()}}
	}
	return s.dir, nil
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

// Setup returns the public material every client needs, once every sealed share has
// been relayed (that is when the threshold key exists).
func (s *CeremonyServer) Setup() (*PublicSetup, error) {
	k := len(s.cer.Committee)
	if s.dir == nil || s.nSealed != k*(k-1) {
		return nil, fmt.Errorf("%w: ceremony incomplete (%d of %d sealed shares)", ErrNotEnoughMembers, s.nSealed, k*(k-1))
	}
	pk, err := publicKeyFromPolys(s.cer.Params, s.dir.PublicKey)
	if err != nil {
		return nil, err
	}
	return &PublicSetup{Ceremony: *s.cer, PublicKey: pk}, nil
}

// PublicSetup is what every client and the server hold after the ceremony: the public
// ceremony description and the collective public key. It holds no secret.
type PublicSetup struct {
	Ceremony  Ceremony
	PublicKey *rlwe.PublicKey
}

// Params returns the parameter set of the setup.
func (s *PublicSetup) Params() *Params { return s.Ceremony.Params }

// KeyMaterial is a committee member's saved state: the public setup and its Shamir
// share of the collective secret key. It is secret; its owner keeps it.
type KeyMaterial struct {
	Setup *PublicSetup
	Self  PartyID
	share multiparty.ShamirSecretShare
}
