package he

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/multiparty"
	"github.com/tuneinsight/lattigo/v6/ring"
)

// DecryptorConfig is a committee member's own configuration: never taken from the server.
type DecryptorConfig struct {
	Identity Identity // the member's identity (signs its approvals)
	Trust    Trust    // the member's trust root (verifies uploads and approvals)
	// MinContributors: the member refuses to decrypt an aggregate of fewer distinct signed
	// uploads (0: DefaultMinContributors; at least 2).
	MinContributors int
	// FirstRound: the member refuses rounds below it. The round counter lives in the
	// Decryptor: a member that restores saved key material into a new Decryptor sets FirstRound
	// to the old one's LastRound()+1, or a server could have it decrypt a past round again.
	FirstRound uint64
}

// Decryptor is a committee member's side of a round: it approves one contributor set per
// round and answers decryption requests with smudged shares of its threshold key, only for
// the sum of an approved set of signed uploads.
type Decryptor struct {
	km       *KeyMaterial
	p        *Params
	combiner multiparty.Combiner
	id       Identity
	ver      *verifier
	setup    [32]byte // the setup digest uploads and approvals are signed under
	min      int
	quorum   int
	mu       sync.Mutex // held from the round counter's check to its move: one set per round, even under concurrent requests
	state    memberRound
}

// memberRound is the member's round counter: the last round it approved or decrypted, the
// manifest of that round, and whether it released its share for it. Rounds only go up.
type memberRound struct {
	started  bool
	round    uint64
	manifest [32]byte
	shared   bool
}

// NewDecryptor prepares member km.Self to approve rounds and answer decryption requests.
func NewDecryptor(km *KeyMaterial, cfg DecryptorConfig) (*Decryptor, error) {
	if km == nil || km.Setup == nil || km.Setup.Ceremony.Params == nil || km.Setup.PublicKey == nil {
		return nil, errors.New("he: incomplete key material")
	}
	c := &km.Setup.Ceremony
	idx := c.index(km.Self)
	if idx < 0 {
		return nil, fmt.Errorf("he: key material of %d, who is not on the committee", km.Self)
	}
	if len(km.Names) != len(c.Committee) {
		return nil, fmt.Errorf("he: key material names %d members of %d", len(km.Names), len(c.Committee))
	}
	if err := cfg.Identity.check(); err != nil {
		return nil, err
	}
	ver, err := newVerifier(cfg.Trust)
	if err != nil {
		return nil, err
	}
	if name, _, err := ver.identify(cfg.Identity.Certificate); err != nil || name != km.Names[idx] {
		return nil, fmt.Errorf("he: identity %q is not member %d (%q) of the ceremony: %v", name, km.Self, km.Names[idx], err)
	}
	mc, err := minContributors(cfg.MinContributors)
	if err != nil {
		return nil, err
	}
	p := c.Params
	points := make([]multiparty.ShamirPublicPoint, len(c.Committee))
	for j := range c.Committee {
		points[j] = shamirPoint(j)
	}
	d := &Decryptor{
		km: km, p: p, id: cfg.Identity, ver: ver, setup: km.Setup.Digest(), min: mc,
		quorum:   ApprovalQuorum(len(c.Committee), c.Threshold),
		combiner: multiparty.NewCombiner(p.rlwe, shamirPoint(idx), points, c.Threshold),
	}
	if cfg.FirstRound > 0 {
		// As if round FirstRound−1 had been decrypted: only later rounds are answered.
		d.state = memberRound{started: true, round: cfg.FirstRound - 1, shared: true}
	}
	return d, nil
}

// LastRound returns the last round the member approved or decrypted (ok false before any).
func (d *Decryptor) LastRound() (round uint64, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state.round, d.state.started
}

// verifyManifest checks a round's contributor set: at least the member's minimum of
// contributions, sorted by sender without repetition, each signed for this run, setup,
// round and dimension by a distinct party certified by the member's trust root. It returns
// the manifest's digest.
func (d *Decryptor) verifyManifest(round uint64, dim int, cs []Contribution) ([32]byte, error) {
	if dim < 1 || dim > MaxDim {
		return [32]byte{}, fmt.Errorf("he: dimension %d outside [1, %d]", dim, MaxDim)
	}
	if len(cs) < d.min {
		return [32]byte{}, fmt.Errorf("%w: %d contributions, this member requires %d", ErrTooFewContributors, len(cs), d.min)
	}
	run := d.km.Setup.Ceremony.Run
	names := make(map[string]bool, len(cs))
	var prev PartyID
	for i, c := range cs {
		if c.From == 0 || (i > 0 && c.From <= prev) {
			return [32]byte{}, untrusted("contributions not sorted by distinct sender")
		}
		prev = c.From
		name, err := d.ver.verify(c.Signature, uploadDigest(run, d.setup, round, c.From, dim, c.C0Digest, c.C1Digest))
		if err != nil {
			return [32]byte{}, fmt.Errorf("he: contribution from %d: %w", c.From, err)
		}
		if names[name] {
			return [32]byte{}, untrusted("two contributions by %q", name)
		}
		names[name] = true
	}
	return manifestDigest(d.setup, round, dim, cs), nil
}

// checkRound applies the member's round counter to a request for round with manifest m.
func (d *Decryptor) checkRound(round uint64, m [32]byte, share bool) error {
	s := d.state
	if !s.started || round > s.round {
		return nil
	}
	if round < s.round {
		return untrusted("round %d is older than round %d, which this member already took part in", round, s.round)
	}
	if m != s.manifest {
		return untrusted("round %d: this member already approved or decrypted another contributor set", round)
	}
	if share && s.shared {
		return untrusted("round %d: this member already released its decryption share", round)
	}
	return nil
}

// Approve checks a round's manifest and, unless the member already approved or decrypted
// another set in this round or a later one, signs its approval. Approving the same
// manifest again returns the same approval.
func (d *Decryptor) Approve(req *ApprovalRequest) (*Approval, error) {
	if req == nil {
		return nil, errors.New("he: nil approval request")
	}
	if req.Ceremony != d.km.Setup.Ceremony.ID {
		return nil, errors.New("he: approval request for another ceremony")
	}
	m, err := d.verifyManifest(req.Round, req.Dim, req.Contributions)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkRound(req.Round, m, false); err != nil {
		return nil, err
	}
	sig, err := d.id.sign(approvalDigest(d.km.Setup.Ceremony.Run, d.setup, req.Round, d.km.Self, m))
	if err != nil {
		return nil, err
	}
	if !d.state.started || req.Round > d.state.round {
		d.state = memberRound{started: true, round: req.Round, manifest: m}
	}
	return &Approval{Ceremony: req.Ceremony, Round: req.Round, From: d.km.Self, Signature: sig}, nil
}

// ApproveEncoded decodes an approval request and answers it.
func (d *Decryptor) ApproveEncoded(b []byte) (*Approval, error) {
	req, err := DecodeApprovalRequest(b)
	if err != nil {
		return nil, err
	}
	return d.Approve(req)
}

// Share answers a decryption request (see ShareEncoded for the checks).
func (d *Decryptor) Share(req *DecryptRequest) (*DecryptShare, error) {
	if req == nil {
		return nil, errors.New("he: nil decryption request")
	}
	if req.C1 == nil && req.c1raw != nil { // an aggregator's request: its c1 halves are encoded
		b, err := req.MarshalBinary()
		if err != nil {
			return nil, err
		}
		return d.ShareEncoded(b)
	}
	nct := d.p.CiphertextsFor(max(req.Dim, 1))
	if len(req.C1) != len(req.Contributions) {
		return nil, fmt.Errorf("he: request has c1 halves for %d of %d contributions", len(req.C1), len(req.Contributions))
	}
	for i := range req.C1 {
		if len(req.C1[i]) != nct {
			return nil, fmt.Errorf("he: contribution %d has %d c1 halves, want %d", i, len(req.C1[i]), nct)
		}
		for k := range req.C1[i] {
			if err := checkPolyValues(d.p, req.C1[i][k]); err != nil {
				return nil, fmt.Errorf("he: contribution %d, ciphertext %d: %w", i, k, err)
			}
		}
	}
	d.mu.Lock() // until finish moves the counter
	defer d.mu.Unlock()
	m, err := d.begin(req, nct)
	if err != nil {
		return nil, err
	}
	rq := d.p.rlwe.RingQ()
	c1 := newPolys(d.p, nct)
	e := &encoder{}
	for i, c := range req.Contributions {
		h := newHalfHash(c1Label)
		for k := range req.C1[i] {
			e.b = e.b[:0]
			_ = e.poly(req.C1[i][k])
			h.Write(e.b)
			rq.Add(c1[k], req.C1[i][k], c1[k])
		}
		if sum32(h) != c.C1Digest {
			return nil, untrusted("the c1 halves of contribution %d are not the ones it signed", c.From)
		}
	}
	return d.finish(req, m, c1)
}

// ShareEncoded answers an encoded decryption request. The member releases its share only
// for round r's sum of contributions it verified itself:
//
//   - the request is for its ceremony, with an active set of exactly Threshold distinct
//     committee members including itself;
//   - the manifest holds at least its minimum of contributions, each signed for this run,
//     setup, round and dimension by a distinct party its own trust root certifies;
//   - at least ApprovalQuorum distinct committee members, identified by the names this
//     member verified in the ceremony, signed their approval of exactly this manifest;
//   - its round counter allows it: r is later than any round it approved or decrypted, or
//     r is that round with the same manifest and no share released yet;
//   - the c1 halves sent hash to the signed digests; the member adds them itself and
//     decrypts that sum, and nothing the server computed.
//
// A refused request does not move the counter.
func (d *Decryptor) ShareEncoded(b []byte) (*DecryptShare, error) {
	p := d.p
	dec, err := newDecoder(b, typeDecryptRequest)
	if err != nil {
		return nil, err
	}
	req, nct := decodeRequestHeader(dec, p)
	if dec.err != nil {
		return nil, dec.err
	}
	pb := p.polyBytes()
	if want := dec.off + len(req.Contributions)*nct*pb; want != len(b) {
		return nil, malformed("decryption request is %d bytes, want %d", len(b), want)
	}
	d.mu.Lock() // until finish moves the counter
	defer d.mu.Unlock()
	m, err := d.begin(req, nct)
	if err != nil {
		return nil, err
	}
	body := b[dec.off:]
	c1 := newPolys(p, nct)
	for i, c := range req.Contributions {
		h := newHalfHash(c1Label)
		for k := 0; k < nct; k++ {
			raw := body[(i*nct+k)*pb : (i*nct+k+1)*pb]
			if _, err := addPolyChecked(p, raw, c1[k]); err != nil {
				return nil, malformed("contribution %d, ciphertext %d: %v", c.From, k, err)
			}
			h.Write(raw)
		}
		if sum32(h) != c.C1Digest {
			return nil, untrusted("the c1 halves of contribution %d are not the ones it signed", c.From)
		}
	}
	return d.finish(req, m, c1)
}

// begin checks everything in a request but its c1 halves and returns its manifest digest.
func (d *Decryptor) begin(req *DecryptRequest, nct int) ([32]byte, error) {
	c := &d.km.Setup.Ceremony
	var zero [32]byte
	if req.Ceremony != c.ID {
		return zero, errors.New("he: decryption request for another ceremony")
	}
	if len(req.Active) != c.Threshold {
		return zero, fmt.Errorf("%w: active set of %d, threshold %d", ErrNotEnoughMembers, len(req.Active), c.Threshold)
	}
	for i, id := range req.Active {
		if c.index(id) < 0 {
			return zero, fmt.Errorf("he: active member %d is not on the committee", id)
		}
		if slices.Contains(req.Active[:i], id) {
			return zero, fmt.Errorf("he: active member %d listed twice", id)
		}
	}
	if !slices.Contains(req.Active, d.km.Self) {
		return zero, fmt.Errorf("he: member %d is not in the active set", d.km.Self)
	}
	if req.Dim < 1 || req.Dim > MaxDim || nct != d.p.CiphertextsFor(req.Dim) {
		return zero, fmt.Errorf("he: request has %d ciphertexts for dimension %d", nct, req.Dim)
	}
	if d.state.started && req.Round < d.state.round {
		return zero, untrusted("round %d is older than round %d, which this member already took part in", req.Round, d.state.round)
	}
	m, err := d.verifyManifest(req.Round, req.Dim, req.Contributions)
	if err != nil {
		return zero, err
	}
	if err := d.checkRound(req.Round, m, true); err != nil {
		return zero, err
	}
	approvers := 0
	var prev PartyID
	for i, ap := range req.Approvals {
		j := c.index(ap.From)
		if j < 0 || (i > 0 && ap.From <= prev) || ap.Ceremony != c.ID || ap.Round != req.Round {
			return zero, untrusted("approval %d is not a distinct committee member's approval of this round", i)
		}
		prev = ap.From
		name, err := d.ver.verify(ap.Signature, approvalDigest(c.Run, d.setup, req.Round, ap.From, m))
		if err != nil {
			return zero, fmt.Errorf("he: approval of member %d: %w", ap.From, err)
		}
		if name != d.km.Names[j] {
			return zero, untrusted("approval for member %d signed by %q, not %q", ap.From, name, d.km.Names[j])
		}
		approvers++
	}
	if approvers < d.quorum {
		return zero, untrusted("%d approvals of the contributor set, quorum %d", approvers, d.quorum)
	}
	return m, nil
}

// finish computes the member's share of the verified c1 sum and moves its counter.
func (d *Decryptor) finish(req *DecryptRequest, m [32]byte, c1 []ring.Poly) (*DecryptShare, error) {
	c := &d.km.Setup.Ceremony
	points := make([]multiparty.ShamirPublicPoint, len(req.Active))
	for i, id := range req.Active {
		points[i] = shamirPoint(c.index(id))
	}
	additive := rlwe.NewSecretKey(d.p.rlwe)
	if err := d.combiner.GenAdditiveShare(points, shamirPoint(c.index(d.km.Self)), d.km.share, additive); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotEnoughMembers, err)
	}
	sm, err := newSmudger(d.p)
	if err != nil {
		return nil, err
	}
	out := &DecryptShare{Ceremony: req.Ceremony, Round: req.Round, From: d.km.Self, Shares: make([]ring.Poly, len(c1))}
	for k := range c1 {
		out.Shares[k] = d.shareOf(c1[k], additive, sm)
	}
	d.state = memberRound{started: true, round: req.Round, manifest: m, shared: true}
	return out, nil
}

// shareOf is the collective key switch to the zero key (Mouchet et al. 2021, CKS) for one
// ciphertext: h = c1·s' + e, so that c0 + Σ h = m + e_ct + Σ e. This is what Lattigo's
// KeySwitchProtocol.GenShare computes with skOut = 0, without its float64-bound Gaussian
// sampler: e comes from the smudger alone, whose σ = 2^LogSmudging dwarfs the σ = 3.2
// GenShare would add.
func (d *Decryptor) shareOf(c1 ring.Poly, additive *rlwe.SecretKey, sm *smudger) ring.Poly {
	rq := d.p.rlwe.RingQ()
	share := rq.NewPoly()
	// Lazy transforms leave values in [0, 2q); addTo reduces them.
	rq.NTTLazy(c1, share)
	rq.MulCoeffsMontgomeryLazy(share, additive.Value.Q, share)
	rq.INTTLazy(share, share)
	sm.addTo(share)
	return share
}
