package securesum

import (
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
	"shoal/pki"
)

// HEOptions configures threshold homomorphic aggregation.
type HEOptions struct {
	Params    *he.Params // nil: he.DefaultParams()
	Committee int        // K decryption-committee members (clients 0..K−1 of the federation)
	Threshold int        // T of them decrypt together
	// Rand returns the randomness of party id (−1: the server) for the ceremony; nil means
	// crypto/rand.
	Rand func(round int, id fl.ClientID) io.Reader

	// Identity and Trust say who this process is and whom it believes; they are local, never
	// taken from the server. Both nil: a simulation, where every client lives in this process
	// with an identity from an in-memory CA. Trust alone: a deployment server (it checks
	// uploads and approvals before relaying them, and holds no identity). Both: a deployment
	// client, which signs as Identity whatever client id the server gives it.
	Identity *he.Identity
	// Trust verifies certificates against a root this process holds (pki.LoadClientVerifier
	// on the CA certificate).
	Trust he.Trust
	// MinContributors: committee members release a decryption share only for the sum of at
	// least this many distinct signed uploads, and the server abandons a round with fewer
	// (0: he.DefaultMinContributors = 3).
	MinContributors int
	// MinThreshold: a client refuses to encrypt under a setup whose threshold is lower
	// (0: 2). It is the client's own floor: the server chooses the committee.
	MinThreshold int
	// TrustedCommittee, if set, lists the certified names a client accepts on the committee:
	// it refuses to encrypt under a key endorsed by anyone else. Without it, the server may
	// seat any certified clients (the guarantee then assumes fewer than T of them collude
	// with it).
	TrustedCommittee []string
}

// HE is the fl.SecureSum of threshold homomorphic aggregation: a one-time key ceremony among
// the committee (round 0), then per round signed encrypted uploads that the server adds, the
// committee's approval of the round's contributor set, and decryption shares from T online
// committee members for the sum of that set only.
type HE struct {
	o      HEOptions
	params *he.Params
	trust  he.Trust

	// Simulation: the in-memory CA and the identities it issued to the federation's clients.
	ca      *pki.MemoryCA
	idMu    sync.Mutex
	idCache map[fl.ClientID]he.Identity

	// Server side: the public setup, known once the ceremony is done.
	mu    sync.Mutex
	setup *he.PublicSetup
	wire  []byte // its encoding, sent with every round's upload request

	// Client side: encryptors for verified public setups, shared by the virtual clients of one
	// process (the setup is public material, identified by its hash in every message).
	cacheMu sync.Mutex
	cache   map[[32]byte]*he.Encryptor

	// Client side: each committee member's decryptor, kept across rounds: it holds the member's
	// round counter (one contributor set approved, one share released, per round; rounds only
	// go up).
	decMu      sync.Mutex
	decryptors map[fl.ClientID]*he.Decryptor
}

// NewHE validates the options. Without Identity and Trust it simulates every client in this
// process, with identities from a fresh in-memory CA.
func NewHE(o HEOptions) (*HE, error) {
	p := o.Params
	if p == nil {
		p = he.DefaultParams()
	}
	if o.Committee < 2 {
		return nil, fmt.Errorf("he: the committee needs at least 2 members, got %d", o.Committee)
	}
	if o.Threshold < 2 || o.Threshold > o.Committee {
		return nil, fmt.Errorf("he: threshold must be in [2, committee = %d], got %d", o.Committee, o.Threshold)
	}
	if o.MinContributors == 0 {
		o.MinContributors = he.DefaultMinContributors
	}
	if o.MinContributors < 2 {
		return nil, fmt.Errorf("he: minimum of %d contributors; at least 2 (one upload is an individual update)", o.MinContributors)
	}
	if o.MinThreshold == 0 {
		o.MinThreshold = 2
	}
	h := newHE(o, p, o.Trust)
	switch {
	case o.Identity != nil && o.Trust == nil:
		return nil, errors.New("he: a client identity needs a trust root (the CA certificate) to verify the others")
	case o.Identity == nil && o.Trust == nil:
		ca, err := pki.NewMemoryCA()
		if err != nil {
			return nil, err
		}
		h.ca, h.trust, h.idCache = ca, ca.Verifier(), map[fl.ClientID]he.Identity{}
	}
	return h, nil
}

// newHE is an HE of checked options, with no identities, setup or key material yet.
func newHE(o HEOptions, p *he.Params, trust he.Trust) *HE {
	return &HE{o: o, params: p, trust: trust, cache: map[[32]byte]*he.Encryptor{}, decryptors: map[fl.ClientID]*he.Decryptor{}}
}

func (h *HE) Name() string { return "he" }

func (h *HE) Describe() string {
	return fmt.Sprintf("he: threshold CKKS aggregation (Lattigo multiparty), committee %d, threshold %d, N = 2^%d, log QP = %.0f, %d-bit security; "+
		"the server adds ciphertexts and decrypts only the aggregate with %d members' shares; no party holds the secret key; "+
		"members sign the key, clients sign their uploads, and a member decrypts only the sum of at least %d distinct signed uploads "+
		"of a round whose contributor set %d members approved",
		h.o.Committee, h.o.Threshold, h.params.LogN(), h.params.LogQP(), h.params.SecurityBits(), h.o.Threshold,
		h.o.MinContributors, he.ApprovalQuorum(h.o.Committee, h.o.Threshold))
}

// Stages of a round: the upload request answered by the signed encrypted update, the
// committee's approval of the round's contributor set, and the decryption request answered by
// decryption shares.
func (h *HE) Stages() []string { return []string{"upload", "approve", "decrypt"} }

func (h *HE) rand(round int, id fl.ClientID) io.Reader {
	if h.o.Rand == nil {
		return rand.Reader
	}
	return h.o.Rand(round, id)
}

// identity returns the identity client id signs with.
func (h *HE) identity(id fl.ClientID) (he.Identity, error) {
	if h.o.Identity != nil {
		return *h.o.Identity, nil
	}
	if h.ca == nil {
		return he.Identity{}, errors.New("he: this process holds no client identity (a deployment server)")
	}
	h.idMu.Lock()
	defer h.idMu.Unlock()
	if v, ok := h.idCache[id]; ok {
		return v, nil
	}
	cert, key, err := h.ca.IssueClient(fmt.Sprintf("sim-client-%d", id))
	if err != nil {
		return he.Identity{}, err
	}
	v := he.Identity{Certificate: cert, Key: key}
	h.idCache[id] = v
	return v, nil
}

// explain adds, in a simulation, why a deployment client's messages would not verify.
func (h *HE) explain(err error) error {
	if err != nil && h.ca != nil && errors.Is(err, he.ErrUntrusted) {
		return fmt.Errorf("%w (this process simulates every client with an in-memory CA; a deployment client needs its own certificate: securesum.FromWireLocal)", err)
	}
	return err
}

// Message kinds, the first byte of every message of this adapter.
const (
	heCeremony byte = 1 + iota
	heDirectory
	heSealed
	heUploadRequest
	heApprovalRequest
	heDecryptRequest
	heReveals
)

// SetupClients is the committee: the first K registered clients.
func (h *HE) SetupClients(n int) []fl.ClientID {
	out := make([]fl.ClientID, min(h.o.Committee, n))
	for i := range out {
		out[i] = fl.ClientID(i)
	}
	return out
}

// CommitteeSize is K, the number of members a ceremony seats.
func (h *HE) CommitteeSize() int { return h.o.Committee }

// MaxAbsError bounds the absolute error of each decrypted coordinate of a sum (and of its
// weight): the smudging noise of T members' shares (he.Params.MaxAbsError).
func (h *HE) MaxAbsError() float64 { return h.params.MaxAbsError(h.o.Threshold) }

// NewGroup returns a server half with this one's options, parameters and trust root and no
// key setup of its own: each aggregation group of the scale-out tier runs its own ceremony,
// among members of the group, and its own rounds under that key. Its rounds are abandoned,
// before anything is decrypted, with fewer than minContributors uploads (the group's minimum
// size), or fewer than this half's own minimum.
func (h *HE) NewGroup(minContributors int) (*HE, error) {
	if h.ca != nil || h.o.Identity != nil {
		return nil, errors.New("he: a group's server half needs a deployment server (a trust root and no identity)")
	}
	o := h.o
	o.MinContributors = max(o.MinContributors, minContributors)
	return newHE(o, h.params, h.trust), nil
}

// partyOf maps a federation client to its HE party id (he reserves 0).
func partyOf(id fl.ClientID) he.PartyID { return he.PartyID(id) + 1 }

func clientOf(p he.PartyID) fl.ClientID { return fl.ClientID(p - 1) }

// NewSetup begins the key ceremony among clients, the committee (in Shamir-point order):
// commitments, directory, reveals and sealed shares, endorsements.
func (h *HE) NewSetup(clients []fl.ClientID) (fl.SumServer, error) {
	if len(clients) != h.o.Committee {
		return nil, fmt.Errorf("he: a committee of %d needs %d clients, the federation has %d", h.o.Committee, h.o.Committee, len(clients))
	}
	committee := make([]he.PartyID, len(clients))
	for i, id := range clients {
		committee[i] = partyOf(id)
	}
	cer, err := he.NewCeremony(h.params, committee, h.o.Threshold, h.rand(0, -1))
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
		reveals, err := s.srv.KeyGenShares()
		if err != nil {
			return nil, false, err
		}
		var parts [][]byte
		for _, r := range reveals {
			b, err := r.MarshalBinary()
			if err != nil {
				return nil, false, err
			}
			parts = append(parts, b)
		}
		for _, id := range s.members {
			shares, err := s.srv.SharesFor(partyOf(id))
			if err != nil {
				return nil, false, err
			}
			mine := slices.Clip(parts)
			for _, sh := range shares {
				b, err := sh.MarshalBinary()
				if err != nil {
					return nil, false, err
				}
				mine = append(mine, b)
			}
			msgs[id] = frame(heReveals, mine)
		}
	default:
		setup, err := s.srv.Setup()
		if err != nil {
			return nil, false, err
		}
		// A member that endorsed garbage would make every client refuse the key: find out now.
		if _, err := setup.Verify(s.h.trust); err != nil {
			return nil, false, fmt.Errorf("he key ceremony: the endorsed setup does not verify: %w", err)
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
		m, err := he.DecodeKeyCommitment(msg)
		if err != nil {
			return err
		}
		if m.From != partyOf(from) {
			return fmt.Errorf("he: key commitment from client %d claims to be from party %d", from, m.From)
		}
		return s.srv.HandleCommitment(m)
	case 2:
		parts, err := unframe(heSealed, msg, len(s.members))
		if err != nil {
			return err
		}
		if len(parts) != len(s.members) {
			return fmt.Errorf("he: ceremony reply of %d parts, want %d", len(parts), len(s.members))
		}
		reveal, err := he.DecodeKeyGenShare(p, parts[0])
		if err != nil {
			return err
		}
		if reveal.From != partyOf(from) {
			return fmt.Errorf("he: key share from client %d claims to be from party %d", from, reveal.From)
		}
		if err := s.srv.HandleKeyGenShare(reveal); err != nil {
			return err
		}
		for _, b := range parts[1:] {
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
		e, err := he.DecodeEndorsement(msg)
		if err != nil {
			return err
		}
		if e.From != partyOf(from) {
			return fmt.Errorf("he: endorsement from client %d claims to be from party %d", from, e.From)
		}
		return s.srv.HandleEndorsement(e)
	}
	return fmt.Errorf("he: unexpected ceremony message at stage %d", s.stage)
}

func (s *heSetupServer) Drop(fl.ClientID)              { s.dropped = true }
func (s *heSetupServer) Result() (fl.SumResult, error) { return fl.SumResult{}, nil }

// NewServer begins a round: the holders upload, the reachable committee members approve the
// contributor set, then T of them decrypt its sum.
func (h *HE) NewServer(round int, clients []fl.ClientID, dim int, _ float64) (fl.SumServer, error) {
	h.mu.Lock()
	setup, wire := h.setup, h.wire
	h.mu.Unlock()
	if setup == nil {
		return nil, errors.New("he: no key ceremony has been run")
	}
	agg, err := he.NewAggregator(setup, uint64(round), dim+1, he.AggregatorConfig{Trust: h.trust, MinContributors: h.o.MinContributors})
	if err != nil {
		return nil, err
	}
	req := make([]byte, 0, 1+8+4+len(wire))
	req = append(req, heUploadRequest)
	req = binary.BigEndian.AppendUint64(req, uint64(round))
	req = binary.BigEndian.AppendUint32(req, uint32(dim))
	req = append(req, wire...)
	committee := make([]fl.ClientID, len(setup.Ceremony.Committee))
	for i, p := range setup.Ceremony.Committee {
		committee[i] = clientOf(p)
	}
	return &heServer{h: h, agg: agg, round: round, dim: dim, holders: slices.Clone(clients), committee: committee, request: req}, nil
}

type heServer struct {
	h         *HE
	agg       *he.Aggregator
	round     int
	dim       int
	holders   []fl.ClientID
	committee []fl.ClientID // the ceremony's members, who approve and decrypt
	request   []byte
	stage     int
	res       *he.Aggregate
}

func (s *heServer) Next() (map[fl.ClientID][]byte, bool, error) {
	msgs := map[fl.ClientID][]byte{}
	switch s.stage {
	case 0:
		for _, id := range s.holders {
			msgs[id] = s.request
		}
	case 1:
		req, err := s.agg.ApprovalRequest()
		if err != nil {
			return nil, false, abandoned(err)
		}
		b, err := req.MarshalBinary()
		if err != nil {
			return nil, false, err
		}
		m := append([]byte{heApprovalRequest}, b...)
		for _, id := range s.committee {
			msgs[id] = m
		}
	case 2:
		// T of the members that approved; the request needs the approval quorum.
		active := s.agg.Approvers()
		req, err := s.agg.DecryptRequest(active)
		if err != nil {
			return nil, false, abandoned(err)
		}
		b, err := req.AppendBinary([]byte{heDecryptRequest})
		if err != nil {
			return nil, false, err
		}
		for _, id := range req.Active {
			msgs[clientOf(id)] = b
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

// abandoned marks a decryption that could not happen (too few members, approvals or uploads):
// nothing was decrypted, so the engine leaves the model unchanged.
func abandoned(err error) error {
	return fmt.Errorf("%w: %v", fl.ErrRoundAbandoned, err)
}

func (s *heServer) Receive(from fl.ClientID, msg []byte) error {
	switch s.stage {
	case 1:
		// An upload under another client's party id would take that client's place (its own
		// upload then refused as a second one of the party).
		p, err := he.UploadSender(msg)
		if err != nil {
			return err
		}
		if p != partyOf(from) {
			return fmt.Errorf("he: upload from client %d claims to be from party %d", from, p)
		}
		return s.agg.AddEncoded(msg)
	case 2:
		ap, err := he.DecodeApproval(msg)
		if err != nil {
			return err
		}
		if ap.From != partyOf(from) {
			return fmt.Errorf("he: approval from client %d claims to be from party %d", from, ap.From)
		}
		return s.agg.AddApproval(ap)
	case 3:
		return s.agg.AddShareEncoded(msg)
	}
	return fmt.Errorf("he: unexpected message at stage %d", s.stage)
}

func (s *heServer) Drop(fl.ClientID) {} // a missing upload is left out; a missing approval may still leave a quorum; a missing share fails Finish

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
// requests (with its input), approval and decryption requests (committee members, from their
// saved key).
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
	reply, err := c.handle(msg)
	return reply, c.h.explain(err)
}

func (c *heClient) handle(msg []byte) ([]byte, error) {
	if len(msg) == 0 {
		return nil, errors.New("he: empty message")
	}
	h := c.h
	p := h.params
	switch msg[0] {
	case heCeremony:
		cer, err := he.DecodeCeremony(msg[1:])
		if err != nil {
			return nil, err
		}
		if !cer.Params.Equal(p) {
			return nil, errors.New("he: the ceremony's parameters are not the run's")
		}
		if cer.Threshold < h.o.MinThreshold {
			return nil, fmt.Errorf("he: ceremony threshold %d below this client's minimum %d", cer.Threshold, h.o.MinThreshold)
		}
		id, err := h.identity(c.id)
		if err != nil {
			return nil, err
		}
		m, commitment, err := he.JoinCeremony(cer, partyOf(c.id), id, h.trust, h.rand(0, c.id))
		if err != nil {
			return nil, err
		}
		c.member = m
		return commitment.MarshalBinary()
	case heDirectory:
		if c.member == nil {
			return nil, errors.New("he: directory before the ceremony")
		}
		dir, err := he.DecodeDirectory(msg[1:])
		if err != nil {
			return nil, err
		}
		reveal, sealed, err := c.member.HandleDirectory(dir)
		if err != nil {
			return nil, err
		}
		parts := make([][]byte, 0, 1+len(sealed))
		b, err := reveal.MarshalBinary()
		if err != nil {
			return nil, err
		}
		parts = append(parts, b)
		for _, s := range sealed {
			if b, err = s.MarshalBinary(); err != nil {
				return nil, err
			}
			parts = append(parts, b)
		}
		return frame(heSealed, parts), nil
	case heReveals:
		if c.member == nil {
			return nil, errors.New("he: sealed shares before the ceremony")
		}
		k := h.o.Committee
		parts, err := unframe(heReveals, msg, 2*k-1)
		if err != nil {
			return nil, err
		}
		if len(parts) != 2*k-1 {
			return nil, fmt.Errorf("he: %d public-key and sealed shares, want %d", len(parts), 2*k-1)
		}
		reveals := make([]*he.KeyGenShare, k)
		for i := range reveals {
			if reveals[i], err = he.DecodeKeyGenShare(p, parts[i]); err != nil {
				return nil, err
			}
		}
		boxes := make([]*he.SealedShare, k-1)
		for i := range boxes {
			if boxes[i], err = he.DecodeSealedShare(p, parts[k+i]); err != nil {
				return nil, err
			}
		}
		km, endorsement, err := c.member.HandleSealedShares(reveals, boxes)
		if err != nil {
			return nil, err
		}
		id, err := h.identity(c.id)
		if err != nil {
			return nil, err
		}
		// The member's key stays in this process's memory: a restarted client takes part in the
		// next ceremony, not in decrypting under the old key.
		d, err := he.NewDecryptor(km, he.DecryptorConfig{Identity: id, Trust: h.trust, MinContributors: h.o.MinContributors})
		if err != nil {
			return nil, err
		}
		h.decMu.Lock()
		h.decryptors[c.id] = d // a new ceremony replaces the member's key
		h.decMu.Unlock()
		c.member = nil
		return endorsement.MarshalBinary()
	case heUploadRequest:
		return c.upload(msg[1:])
	case heApprovalRequest:
		dec, err := h.decryptor(c.id)
		if err != nil {
			return nil, err
		}
		ap, err := dec.ApproveEncoded(msg[1:])
		if err != nil {
			return nil, err
		}
		return ap.MarshalBinary()
	case heDecryptRequest:
		dec, err := h.decryptor(c.id)
		if err != nil {
			return nil, err
		}
		sh, err := dec.ShareEncoded(msg[1:])
		if err != nil {
			return nil, err
		}
		return sh.MarshalBinary()
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
	id, err := c.h.identity(c.id)
	if err != nil {
		return nil, err
	}
	enc, err := c.h.encryptor(b[12:], id)
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

// decryptor returns committee member id's decryptor from the last ceremony it completed.
func (h *HE) decryptor(id fl.ClientID) (*he.Decryptor, error) {
	h.decMu.Lock()
	defer h.decMu.Unlock()
	if d, ok := h.decryptors[id]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("he: client %d holds no key from a completed ceremony", id)
}

// encryptor verifies the setup a round request carries (once per distinct setup: every
// committee member endorsed it, under this process's trust root, with at least the client's
// minimum threshold) and returns an encryptor under it signing as id.
func (h *HE) encryptor(b []byte, id he.Identity) (*he.Encryptor, error) {
	key := sha256.Sum256(b)
	h.cacheMu.Lock()
	defer h.cacheMu.Unlock()
	if e, ok := h.cache[key]; ok {
		return e.WithIdentity(id)
	}
	s, err := he.DecodePublicSetup(b)
	if err != nil {
		return nil, err
	}
	if !s.Params().Equal(h.params) {
		return nil, errors.New("he: the public setup's parameters are not the run's")
	}
	if s.Ceremony.Threshold < h.o.MinThreshold {
		return nil, fmt.Errorf("he: setup threshold %d below this client's minimum %d", s.Ceremony.Threshold, h.o.MinThreshold)
	}
	if h.o.TrustedCommittee != nil {
		names, err := s.Verify(h.trust)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if !slices.Contains(h.o.TrustedCommittee, n) {
				return nil, fmt.Errorf("%w: committee member %q is not one this client trusts", he.ErrUntrusted, n)
			}
		}
	}
	e, err := he.NewEncryptor(s, id, h.trust)
	if err != nil {
		return nil, err
	}
	if len(h.cache) >= 16 {
		clear(h.cache)
	}
	h.cache[key] = e
	return e.WithIdentity(id)
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

// Sensitivity is clip: the update is encrypted as it is, not rounded to a grid.
func (h *HE) Sensitivity(clip float64, _ int) float64 { return clip }
