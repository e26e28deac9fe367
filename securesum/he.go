package securesum

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"

	"shoal/fl"
	"shoal/he"
)

// HEOptions configures threshold homomorphic aggregation.
type HEOptions struct {
	Params    *he.Params // nil: he.DefaultParams()
	Committee int        // K decryption-committee members (clients 0..K−1 of the federation)
	Threshold int        // T of them decrypt together
	// Rand returns the randomness of party id (−1: the server) for the ceremony; nil means
	// crypto/rand.
	Rand func(round int, id fl.ClientID) io.Reader
}

// HE is the fl.SecureSum of threshold homomorphic aggregation: a one-time key ceremony among
// the committee (round 0), then per round encrypted uploads that the server adds, and
// decryption shares from T online committee members for the aggregate only.
type HE struct {
	o      HEOptions
	params *he.Params

	// Server side: the public setup, known once the ceremony is done.
	mu    sync.Mutex
	setup *he.PublicSetup
	wire  []byte // its encoding, sent with every round's upload request

	// Client side: decoded public setups, shared by the virtual clients of one process (it is
	// public material, checked against its hash in every message).
	cacheMu sync.Mutex
	cache   map[[32]byte]*he.PublicSetup

	// Client side: each committee member's decryptor, kept across rounds so that its limit on
	// decryption requests per round holds (every extra decryption averages the smudging noise).
	decMu      sync.Mutex
	decryptors map[fl.ClientID]*he.Decryptor
}

// NewHE validates the options.
func NewHE(o HEOptions) (*HE, error) {
	p := o.Params
	if p == nil {
		p = he.DefaultParams()
	}
	if o.Committee < 2 {
		return nil, fmt.Errorf("he: the committee needs at least 2 members, got %d", o.Committee)
	}
	if o.Threshold < 1 || o.Threshold > o.Committee {
		return nil, fmt.Errorf("he: threshold must be in [1, committee = %d], got %d", o.Committee, o.Threshold)
	}
	return &HE{o: o, params: p, cache: map[[32]byte]*he.PublicSetup{}, decryptors: map[fl.ClientID]*he.Decryptor{}}, nil
}

func (h *HE) Name() string { return "he" }

func (h *HE) Describe() string {
	return fmt.Sprintf("he: threshold CKKS aggregation (Lattigo multiparty), committee %d, threshold %d, N = 2^%d, log QP = %.0f, %d-bit security; "+
		"the server adds ciphertexts and decrypts only the aggregate with %d members' shares; no party holds the secret key",
		h.o.Committee, h.o.Threshold, h.params.LogN(), h.params.LogQP(), h.params.SecurityBits(), h.o.Threshold)
}

// Stages of a round: the upload request answered by the encrypted update, the liveness check
// of the committee, and the decryption request answered by decryption shares.
func (h *HE) Stages() []string { return []string{"upload", "ping", "decrypt"} }

func (h *HE) rand(round int, id fl.ClientID) io.Reader {
	if h.o.Rand == nil {
		return rand.Reader
	}
	return h.o.Rand(round, id)
}

// Message kinds, the first byte of every message of this adapter.
const (
	heCeremony byte = 1 + iota
	heDirectory
	heSealed
	heUploadRequest
	hePing
	heDecryptRequest
	heAck
)

// SetupClients is the committee: the first K registered clients.
func (h *HE) SetupClients(n int) []fl.ClientID {
	out := make([]fl.ClientID, min(h.o.Committee, n))
	for i := range out {
		out[i] = fl.ClientID(i)
	}
	return out
}

func (h *HE) committee() []he.PartyID {
	out := make([]he.PartyID, h.o.Committee)
	for i := range out {
		out[i] = partyOf(fl.ClientID(i))
	}
	return out
}

// partyOf maps a federation client to its HE party id (he reserves 0).
func partyOf(id fl.ClientID) he.PartyID { return he.PartyID(id) + 1 }

func clientOf(p he.PartyID) fl.ClientID { return fl.ClientID(p - 1) }

// NewSetup begins the key ceremony.
func (h *HE) NewSetup(clients []fl.ClientID) (fl.SumServer, error) {
	if len(clients) != h.o.Committee {
		return nil, fmt.Errorf("he: a committee of %d needs %d clients, the federation has %d", h.o.Committee, h.o.Committee, len(clients))
	}
	cer, err := he.NewCeremony(h.params, h.committee(), h.o.Threshold, h.rand(0, -1))
	if err != nil {
		return nil, err
	}
	srv, err := he.NewCeremonyServer(cer)
	if err != nil {
		return nil, err
	}
	b, err := cer.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return &heSetupServer{h: h, srv: srv, ceremony: append([]byte{heCeremony}, b...), members: clients}, nil
}

type heSetupServer struct {
	h        *HE
	srv      *he.CeremonyServer
	ceremony []byte
	members  []fl.ClientID
	stage    int
	dropped  bool
}

func (s *heSetupServer) Next() (map[fl.ClientID][]byte, bool, error) {
	if s.dropped {
		return nil, false, fmt.Errorf("he key ceremony: a committee member dropped out; the ceremony needs all %d (%w)", len(s.members), he.ErrNotEnoughMembers)
	}
	msgs := map[fl.ClientID][]byte{}
	switch s.stage {
	case 0:
		for _, id := range s.members {
			msgs[id] = s.ceremony
		}
	case 1:
		dir, err := s.srv.Directory()
		if err != nil {
			return nil, false, err
		}
		b, err := dir.MarshalBinary()
		if err != nil {
			return nil, false, err
		}
		for _, id := range s.members {
			msgs[id] = append([]byte{heDirectory}, b...)
		}
	case 2:
		for _, id := range s.members {
			shares, err := s.srv.SharesFor(partyOf(id))
			if err != nil {
				return nil, false, err
			}
			if msgs[id], err = frameSealed(shares); err != nil {
				return nil, false, err
			}
		}
	default:
		setup, err := s.srv.Setup()
		if err != nil {
			return nil, false, err
		}
		wire, err := setup.MarshalBinary()
		if err != nil {
			return nil, false, err
		}
		s.h.mu.Lock()
		s.h.setup, s.h.wire = setup, wire
		s.h.mu.Unlock()
		return nil, true, nil
	}
	s.stage++
	return msgs, false, nil
}

func (s *heSetupServer) Receive(from fl.ClientID, msg []byte) error {
	p := s.h.params
	switch s.stage {
	case 1:
		m, err := he.DecodeKeyGenShare(p, msg)
		if err != nil {
			return err
		}
		if m.From != partyOf(from) {
			return fmt.Errorf("he: key share from client %d claims to be from party %d", from, m.From)
		}
		return s.srv.HandleKeyGenShare(m)
	case 2:
		parts, err := unframe(heSealed, msg, len(s.members))
		if err != nil {
			return err
		}
		for _, b := range parts {
			m, err := he.DecodeSealedShare(p, b)
			if err != nil {
				return err
			}
			if m.From != partyOf(from) {
				return fmt.Errorf("he: sealed share from client %d claims to be from party %d", from, m.From)
			}
			if err := s.srv.HandleSealedShare(m); err != nil {
				return err
			}
		}
		return nil
	case 3:
		if !bytes.Equal(msg, []byte{heAck}) {
			return errors.New("he: malformed ceremony acknowledgement")
		}
		return nil
	}
	return fmt.Errorf("he: unexpected ceremony message at stage %d", s.stage)
}

func (s *heSetupServer) Drop(fl.ClientID)              { s.dropped = true }
func (s *heSetupServer) Result() (fl.SumResult, error) { return fl.SumResult{}, nil }

// NewServer begins a round: the holders upload, then T online committee members decrypt.
func (h *HE) NewServer(round int, clients []fl.ClientID, dim int, _ float64) (fl.SumServer, error) {
	h.mu.Lock()
	setup, wire := h.setup, h.wire
	h.mu.Unlock()
	if setup == nil {
		return nil, errors.New("he: no key ceremony has been run")
	}
	agg, err := he.NewAggregator(setup, uint64(round), dim+1)
	if err != nil {
		return nil, err
	}
	req := make([]byte, 0, 1+8+4+len(wire))
	req = append(req, heUploadRequest)
	req = binary.BigEndian.AppendUint64(req, uint64(round))
	req = binary.BigEndian.AppendUint32(req, uint32(dim))
	req = append(req, wire...)
	return &heServer{h: h, agg: agg, round: round, dim: dim, holders: slices.Clone(clients), request: req, online: map[fl.ClientID]bool{}}, nil
}

type heServer struct {
	h       *HE
	agg     *he.Aggregator
	round   int
	dim     int
	holders []fl.ClientID
	request []byte
	stage   int
	online  map[fl.ClientID]bool
	active  []he.PartyID
	res     *he.Aggregate
}

func (s *heServer) Next() (map[fl.ClientID][]byte, bool, error) {
	msgs := map[fl.ClientID][]byte{}
	switch s.stage {
	case 0:
		for _, id := range s.holders {
			msgs[id] = s.request
		}
	case 1:
		for i := range s.h.o.Committee {
			msgs[fl.ClientID(i)] = []byte{hePing}
		}
	case 2:
		for i := range s.h.o.Committee {
			if s.online[fl.ClientID(i)] {
				s.active = append(s.active, partyOf(fl.ClientID(i)))
			}
		}
		// Exactly T members: each extra decryption of the aggregate would average its smudging.
		if len(s.active) > s.h.o.Threshold {
			s.active = s.active[:s.h.o.Threshold]
		}
		req, err := s.agg.DecryptRequest(s.active)
		if err != nil {
			return nil, false, abandoned(err)
		}
		b, err := req.MarshalBinary()
		if err != nil {
			return nil, false, err
		}
		for _, id := range s.active {
			msgs[clientOf(id)] = append([]byte{heDecryptRequest}, b...)
		}
	default:
		res, err := s.agg.Finish()
		if err != nil {
			return nil, false, abandoned(err)
		}
		s.res = res
		return nil, true, nil
	}
	s.stage++
	return msgs, false, nil
}

// abandoned marks a decryption that could not happen (too few members, too few uploads):
// nothing was decrypted, so the engine leaves the model unchanged.
func abandoned(err error) error {
	return fmt.Errorf("%w: %v", fl.ErrRoundAbandoned, err)
}

func (s *heServer) Receive(from fl.ClientID, msg []byte) error {
	switch s.stage {
	case 1:
		return s.agg.AddEncoded(msg)
	case 2:
		if !bytes.Equal(msg, []byte{heAck}) {
			return errors.New("he: malformed liveness answer")
		}
		s.online[from] = true
		return nil
	case 3:
		return s.agg.AddShareEncoded(msg)
	}
	return fmt.Errorf("he: unexpected message at stage %d", s.stage)
}

func (s *heServer) Drop(fl.ClientID) {} // a missing upload is left out; a missing share fails Finish

func (s *heServer) Result() (fl.SumResult, error) {
	if s.res == nil {
		return fl.SumResult{}, errors.New("he: no result")
	}
	if len(s.res.Sum) != s.dim+1 {
		return fl.SumResult{}, fmt.Errorf("he: aggregate has %d values, want %d", len(s.res.Sum), s.dim+1)
	}
	return fl.SumResult{Sum: s.res.Sum[:s.dim], Weight: s.res.TotalWeight, Unclipped: s.res.Sum[s.dim],
		Count: len(s.res.Contributors)}, nil
}

// NewClient begins client id's half: it answers ceremony messages (committee members), upload
// requests (with its input) and decryption requests (committee members, from their saved key).
func (h *HE) NewClient(round int, id fl.ClientID, in fl.SumInput) (fl.SumClient, error) {
	if in.Update != nil {
		if !(in.Weight > 0) || math.IsInf(in.Weight, 0) {
			return nil, fmt.Errorf("he input: weight %v must be finite and > 0", in.Weight)
		}
		// The unclipped bit rides as one more value, divided by the weight the encryptor multiplies in.
		vec := make([]float32, len(in.Update)+1)
		copy(vec, in.Update)
		vec[len(in.Update)] = float32(in.Unclipped / in.Weight)
		in.Update = vec
	}
	return &heClient{h: h, round: round, id: id, in: in}, nil
}

type heClient struct {
	h      *HE
	round  int
	id     fl.ClientID
	in     fl.SumInput
	member *he.CeremonyMember
}

func (c *heClient) Handle(msg []byte) ([]byte, error) {
	if len(msg) == 0 {
		return nil, errors.New("he: empty message")
	}
	p := c.h.params
	switch msg[0] {
	case heCeremony:
		cer, err := he.DecodeCeremony(msg[1:])
		if err != nil {
			return nil, err
		}
		if !cer.Params.Equal(p) {
			return nil, errors.New("he: the ceremony's parameters are not the run's")
		}
		m, share, err := he.JoinCeremony(cer, partyOf(c.id), c.h.rand(0, c.id))
		if err != nil {
			return nil, err
		}
		c.member = m
		return share.MarshalBinary()
	case heDirectory:
		if c.member == nil {
			return nil, errors.New("he: directory before the ceremony")
		}
		dir, err := he.DecodeDirectory(p, msg[1:])
		if err != nil {
			return nil, err
		}
		sealed, err := c.member.HandleDirectory(dir)
		if err != nil {
			return nil, err
		}
		return frameSealed(sealed)
	case heSealed:
		if c.member == nil {
			return nil, errors.New("he: sealed shares before the ceremony")
		}
		parts, err := unframe(heSealed, msg, c.h.o.Committee)
		if err != nil {
			return nil, err
		}
		boxes := make([]*he.SealedShare, len(parts))
		for i, b := range parts {
			if boxes[i], err = he.DecodeSealedShare(p, b); err != nil {
				return nil, err
			}
		}
		km, err := c.member.HandleSealedShares(boxes)
		if err != nil {
			return nil, err
		}
		// The member's key stays in this process's memory: a restarted client takes part in the
		// next ceremony, not in decrypting under the old key.
		d, err := he.NewDecryptor(km)
		if err != nil {
			return nil, err
		}
		c.h.decMu.Lock()
		c.h.decryptors[c.id] = d // a new ceremony replaces the member's key
		c.h.decMu.Unlock()
		c.member = nil
		return []byte{heAck}, nil
	case heUploadRequest:
		return c.upload(msg[1:])
	case hePing:
		return []byte{heAck}, nil
	case heDecryptRequest:
		return c.share(msg[1:])
	}
	return nil, fmt.Errorf("he: unknown message kind %d", msg[0])
}

func (c *heClient) upload(b []byte) ([]byte, error) {
	if len(b) < 12 {
		return nil, errors.New("he: malformed upload request")
	}
	round, dim := binary.BigEndian.Uint64(b), int(binary.BigEndian.Uint32(b[8:]))
	if round != uint64(c.round) || c.in.Update == nil || dim+1 != len(c.in.Update) {
		return nil, fmt.Errorf("he: upload request for round %d dim %d; the client holds round %d", round, dim, c.round)
	}
	setup, err := c.h.publicSetup(b[12:])
	if err != nil {
		return nil, err
	}
	enc, err := he.NewEncryptor(setup)
	if err != nil {
		return nil, err
	}
	up, err := enc.Encrypt(round, partyOf(c.id), c.in.Update, c.in.Weight)
	if err != nil {
		return nil, err
	}
	c.in.Update = nil
	return up.MarshalBinary()
}

func (c *heClient) share(b []byte) ([]byte, error) {
	dec, err := c.h.decryptor(c.id)
	if err != nil {
		return nil, err
	}
	sh, err := dec.ShareEncoded(b)
	if err != nil {
		return nil, err
	}
	return sh.MarshalBinary()
}

// decryptor returns committee member id's decryptor from the last ceremony it completed.
func (h *HE) decryptor(id fl.ClientID) (*he.Decryptor, error) {
	h.decMu.Lock()
	defer h.decMu.Unlock()
	if d, ok := h.decryptors[id]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("he: client %d holds no key from a completed ceremony", id)
}

// publicSetup decodes the setup a round request carries, once per distinct setup.
func (h *HE) publicSetup(b []byte) (*he.PublicSetup, error) {
	key := sha256.Sum256(b)
	h.cacheMu.Lock()
	defer h.cacheMu.Unlock()
	if s, ok := h.cache[key]; ok {
		return s, nil
	}
	s, err := he.DecodePublicSetup(b)
	if err != nil {
		return nil, err
	}
	if !s.Params().Equal(h.params) {
		return nil, errors.New("he: the public setup's parameters are not the run's")
	}
	h.cache[key] = s
	return s, nil
}

// frameSealed packs sealed Shamir shares into one message.
func frameSealed(shares []*he.SealedShare) ([]byte, error) {
	parts := make([][]byte, len(shares))
	for i, sh := range shares {
		b, err := sh.MarshalBinary()
		if err != nil {
			return nil, err
		}
		parts[i] = b
	}
	return frame(heSealed, parts), nil
}

// frame packs parts as kind, count, then length-prefixed parts.
func frame(kind byte, parts [][]byte) []byte {
	n := 5
	for _, p := range parts {
		n += 4 + len(p)
	}
	b := make([]byte, 0, n)
	b = append(b, kind)
	b = binary.BigEndian.AppendUint32(b, uint32(len(parts)))
	for _, p := range parts {
		b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}

func unframe(kind byte, b []byte, maxParts int) ([][]byte, error) {
	if len(b) < 5 || b[0] != kind {
		return nil, errors.New("he: malformed framed message")
	}
	count := int(binary.BigEndian.Uint32(b[1:]))
	if count > maxParts {
		return nil, fmt.Errorf("he: %d parts, at most %d expected", count, maxParts)
	}
	b = b[5:]
	parts := make([][]byte, 0, count)
	for range count {
		if len(b) < 4 {
			return nil, errors.New("he: truncated framed message")
		}
		l := int(binary.BigEndian.Uint32(b))
		if l > len(b)-4 {
			return nil, errors.New("he: truncated framed message")
		}
		parts = append(parts, b[4:4+l])
		b = b[4+l:]
	}
	if len(b) != 0 {
		return nil, errors.New("he: trailing bytes in framed message")
	}
	return parts, nil
}
