package he

import (
	"fmt"

	"github.com/tuneinsight/lattigo/v6/ring"
)

// Wire formats. Every message: "SHHE", version, type, then big-endian fixed-size fields;
// polynomials are Lattigo's MarshalBinary output, whose header and coefficient ranges
// are checked against the parameters before Lattigo parses them. Decoders take the
// parameters when the message does not carry them, reject any trailing byte, and
// check counts before allocating. A signature is two length-prefixed byte strings: the
// signer's certificate and the signature value.

// maxContributions bounds the contributor set of one round.
const maxContributions = 1 << 20

func (e *encoder) ceremonyID(id CeremonyID) { e.raw(id[:]) }

func (d *decoder) ceremonyID() (id CeremonyID) {
	copy(id[:], d.take(len(id), "ceremony id"))
	return id
}

func (e *encoder) digest(h [32]byte) { e.raw(h[:]) }

func (d *decoder) digest(what string) (h [32]byte) {
	copy(h[:], d.take(32, what))
	return h
}

func (e *encoder) signature(s Signature) {
	e.bytes(s.Certificate)
	e.bytes(s.Value)
}

// signature reads a signature; its slices alias the input.
func (d *decoder) signature(what string) Signature {
	cert := d.bytes(maxCertificateBytes, what+" certificate")
	v := d.bytes(maxSignatureBytes, what+" value")
	if d.err == nil && (len(cert) == 0 || len(v) == 0) {
		d.fail("empty %s", what)
	}
	return Signature{Certificate: cert, Value: v}
}

func signatureSize(s Signature) int { return 8 + len(s.Certificate) + len(s.Value) }

func (e *encoder) polys(ps ...ring.Poly) error {
	for _, p := range ps {
		if err := e.poly(p); err != nil {
			return err
		}
	}
	return nil
}

func newPolys(p *Params, n int) []ring.Poly {
	out := make([]ring.Poly, n)
	rq := p.rlwe.RingQ()
	for i := range out {
		out[i] = rq.NewPoly()
	}
	return out
}

// MarshalBinary encodes the upload.
func (u *Upload) MarshalBinary() ([]byte, error) { return u.AppendBinary(nil) }

// AppendBinary appends the encoded upload to dst (encoding.BinaryAppender): a client
// that reuses its send buffer avoids allocating megabytes per round.
func (u *Upload) AppendBinary(dst []byte) ([]byte, error) {
	size := 16 + 8 + 8 + 8 + signatureSize(u.Signature)
	if len(u.Ciphertexts) > 0 {
		size += len(u.Ciphertexts) * (u.Ciphertexts[0][0].BinarySize() + u.Ciphertexts[0][1].BinarySize())
	}
	e := appendEncoder(dst, typeUpload, size)
	e.ceremonyID(u.Ceremony)
	e.u64(u.Round)
	e.u64(uint64(u.From))
	e.u32(uint32(u.Dim))
	e.u32(uint32(len(u.Ciphertexts)))
	e.signature(u.Signature)
	for _, ct := range u.Ciphertexts {
		if err := e.polys(ct[0], ct[1]); err != nil {
			return nil, err
		}
	}
	return e.b, nil
}

func decodeUploadHeader(d *decoder, p *Params) (ceremony CeremonyID, round uint64, from PartyID, dim, nct int) {
	ceremony = d.ceremonyID()
	round = d.u64("round")
	from = PartyID(d.u64("sender"))
	dim = d.count(MaxDim, "dimension")
	nct = d.count(p.CiphertextsFor(MaxDim), "ciphertext count")
	if d.err == nil && (dim < 1 || nct != p.CiphertextsFor(dim)) {
		d.fail("%d ciphertexts cannot carry dimension %d", nct, dim)
	}
	return
}

// UploadSender returns the sender an encoded upload claims, from its header alone: a server
// that knows who sent it checks the claim before adding the upload.
func UploadSender(b []byte) (PartyID, error) {
	d, err := newDecoder(b, typeUpload)
	if err != nil {
		return 0, err
	}
	d.ceremonyID()
	d.u64("round")
	from := PartyID(d.u64("sender"))
	return from, d.err
}

// DecodeUpload decodes and validates an upload for parameters p (not its signature, which
// needs the verifier's trust root and run).
func DecodeUpload(p *Params, b []byte) (*Upload, error) {
	d, err := newDecoder(b, typeUpload)
	if err != nil {
		return nil, err
	}
	u := &Upload{}
	u.Ceremony, u.Round, u.From, u.Dim, _ = decodeUploadHeader(d, p)
	u.Signature = cloneSignature(d.signature("upload signature"))
	if d.err != nil {
		return nil, d.err
	}
	nct := p.CiphertextsFor(u.Dim)
	if want := d.off + nct*2*p.polyBytes(); want != len(b) {
		return nil, malformed("upload is %d bytes, want %d", len(b), want)
	}
	polys := newPolys(p, 2*nct)
	u.Ciphertexts = make([][2]ring.Poly, nct)
	for k := range u.Ciphertexts {
		d.poly(p, &polys[2*k], "ciphertext c0")
		d.poly(p, &polys[2*k+1], "ciphertext c1")
		u.Ciphertexts[k] = [2]ring.Poly{polys[2*k], polys[2*k+1]}
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	return u, nil
}

func (e *encoder) contributions(cs []Contribution) {
	e.u32(uint32(len(cs)))
	for _, c := range cs {
		e.u64(uint64(c.From))
		e.digest(c.C0Digest)
		e.digest(c.C1Digest)
		e.signature(c.Signature)
	}
}

func contributionsSize(cs []Contribution) int {
	n := 4
	for _, c := range cs {
		n += 8 + 64 + signatureSize(c.Signature)
	}
	return n
}

func (d *decoder) contributions() []Contribution {
	n := d.count(maxContributions, "contribution count")
	if d.err != nil {
		return nil
	}
	// Each contribution takes at least 8+64+10 bytes: refuse a count the input cannot hold
	// before allocating for it.
	if n > (len(d.b)-d.off)/82 {
		d.fail("%d contributions cannot fit in %d bytes", n, len(d.b)-d.off)
		return nil
	}
	cs := make([]Contribution, n)
	for i := range cs {
		cs[i].From = PartyID(d.u64("contributor"))
		cs[i].C0Digest = d.digest("c0 digest")
		cs[i].C1Digest = d.digest("c1 digest")
		cs[i].Signature = cloneSignature(d.signature("contribution signature"))
		if d.err != nil {
			return nil
		}
	}
	return cs
}

// MarshalBinary encodes the approval request.
func (r *ApprovalRequest) MarshalBinary() ([]byte, error) {
	e := newEncoder(typeApprovalRequest, 32+contributionsSize(r.Contributions))
	e.ceremonyID(r.Ceremony)
	e.u64(r.Round)
	e.u32(uint32(r.Dim))
	e.contributions(r.Contributions)
	return e.b, nil
}

// DecodeApprovalRequest decodes an approval request.
func DecodeApprovalRequest(b []byte) (*ApprovalRequest, error) {
	d, err := newDecoder(b, typeApprovalRequest)
	if err != nil {
		return nil, err
	}
	r := &ApprovalRequest{Ceremony: d.ceremonyID(), Round: d.u64("round")}
	r.Dim = d.count(MaxDim, "dimension")
	r.Contributions = d.contributions()
	if err := d.done(); err != nil {
		return nil, err
	}
	return r, nil
}

func (e *encoder) approval(a *Approval) {
	e.ceremonyID(a.Ceremony)
	e.u64(a.Round)
	e.u64(uint64(a.From))
	e.signature(a.Signature)
}

func (d *decoder) approval() Approval {
	a := Approval{Ceremony: d.ceremonyID(), Round: d.u64("round"), From: PartyID(d.u64("member"))}
	a.Signature = cloneSignature(d.signature("approval signature"))
	return a
}

// MarshalBinary encodes the approval.
func (a *Approval) MarshalBinary() ([]byte, error) {
	e := newEncoder(typeApproval, 32+signatureSize(a.Signature))
	e.approval(a)
	return e.b, nil
}

// DecodeApproval decodes an approval.
func DecodeApproval(b []byte) (*Approval, error) {
	d, err := newDecoder(b, typeApproval)
	if err != nil {
		return nil, err
	}
	a := d.approval()
	if err := d.done(); err != nil {
		return nil, err
	}
	return &a, nil
}

// MarshalBinary encodes the request.
func (r *DecryptRequest) MarshalBinary() ([]byte, error) { return r.AppendBinary(nil) }

// AppendBinary appends the encoded request to dst (encoding.BinaryAppender).
func (r *DecryptRequest) AppendBinary(dst []byte) ([]byte, error) {
	size := 64 + 8*len(r.Active) + contributionsSize(r.Contributions)
	for i := range r.Approvals {
		size += 32 + signatureSize(r.Approvals[i].Signature)
	}
	for _, raw := range r.c1raw {
		size += len(raw)
	}
	for _, cs := range r.C1 {
		size += len(cs) * polySize(cs)
	}
	e := appendEncoder(dst, typeDecryptRequest, size)
	e.ceremonyID(r.Ceremony)
	e.u64(r.Round)
	e.u32(uint32(r.Dim))
	e.u32(uint32(len(r.Active)))
	for _, id := range r.Active {
		e.u64(uint64(id))
	}
	e.contributions(r.Contributions)
	e.u32(uint32(len(r.Approvals)))
	for i := range r.Approvals {
		e.approval(&r.Approvals[i])
	}
	switch {
	case r.C1 != nil:
		if len(r.C1) != len(r.Contributions) {
			return nil, fmt.Errorf("he: request has c1 halves for %d of %d contributions", len(r.C1), len(r.Contributions))
		}
		nct := 0
		if len(r.C1) > 0 {
			nct = len(r.C1[0])
		}
		e.u32(uint32(nct))
		for _, cs := range r.C1 {
			if len(cs) != nct {
				return nil, fmt.Errorf("he: contributions with %d and %d ciphertexts", nct, len(cs))
			}
			if err := e.polys(cs...); err != nil {
				return nil, err
			}
		}
	default:
		if len(r.c1raw) != len(r.Contributions) {
			return nil, fmt.Errorf("he: request has c1 halves for %d of %d contributions", len(r.c1raw), len(r.Contributions))
		}
		e.u32(uint32(r.c1nct))
		for _, raw := range r.c1raw {
			e.raw(raw)
		}
	}
	return e.b, nil
}

func polySize(ps []ring.Poly) int {
	if len(ps) == 0 {
		return 0
	}
	return ps[0].BinarySize()
}

// decodeRequestHeader reads a request's fields up to its polynomials and checks that the
// ciphertext count matches the dimension.
func decodeRequestHeader(d *decoder, p *Params) (*DecryptRequest, int) {
	r := &DecryptRequest{Ceremony: d.ceremonyID(), Round: d.u64("round")}
	r.Dim = d.count(MaxDim, "dimension")
	nActive := d.count(maxCommittee, "active set size")
	if d.err != nil {
		return nil, 0
	}
	r.Active = make([]PartyID, nActive)
	for i := range r.Active {
		r.Active[i] = PartyID(d.u64("active member"))
	}
	r.Contributions = d.contributions()
	nApprovals := d.count(maxCommittee, "approval count")
	if d.err != nil {
		return nil, 0
	}
	if nApprovals > (len(d.b)-d.off)/42 {
		d.fail("%d approvals cannot fit in %d bytes", nApprovals, len(d.b)-d.off)
		return nil, 0
	}
	r.Approvals = make([]Approval, nApprovals)
	for i := range r.Approvals {
		r.Approvals[i] = d.approval()
	}
	nct := d.count(p.CiphertextsFor(MaxDim), "ciphertext count")
	if d.err == nil && (r.Dim < 1 || nct != p.CiphertextsFor(r.Dim)) {
		d.fail("%d ciphertexts cannot carry dimension %d", nct, r.Dim)
	}
	if d.err != nil {
		return nil, 0
	}
	return r, nct
}

// DecodeDecryptRequest decodes and validates a decryption request for parameters p.
func DecodeDecryptRequest(p *Params, b []byte) (*DecryptRequest, error) {
	d, err := newDecoder(b, typeDecryptRequest)
	if err != nil {
		return nil, err
	}
	r, nct := decodeRequestHeader(d, p)
	if d.err != nil {
		return nil, d.err
	}
	if want := d.off + len(r.Contributions)*nct*p.polyBytes(); want != len(b) {
		return nil, malformed("decryption request is %d bytes, want %d", len(b), want)
	}
	r.C1 = make([][]ring.Poly, len(r.Contributions))
	for i := range r.C1 {
		r.C1[i] = newPolys(p, nct)
		for k := range r.C1[i] {
			d.poly(p, &r.C1[i][k], "ciphertext c1")
		}
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	return r, nil
}

// MarshalBinary encodes the share.
func (s *DecryptShare) MarshalBinary() ([]byte, error) { return s.AppendBinary(nil) }

// AppendBinary appends the encoded share to dst (encoding.BinaryAppender).
func (s *DecryptShare) AppendBinary(dst []byte) ([]byte, error) {
	e := appendEncoder(dst, typeDecryptShare, 48+len(s.Shares)*polySize(s.Shares))
	e.ceremonyID(s.Ceremony)
	e.u64(s.Round)
	e.u64(uint64(s.From))
	e.u32(uint32(len(s.Shares)))
	if err := e.polys(s.Shares...); err != nil {
		return nil, err
	}
	return e.b, nil
}

// DecodeDecryptShare decodes and validates a decryption share for parameters p.
func DecodeDecryptShare(p *Params, b []byte) (*DecryptShare, error) {
	d, err := newDecoder(b, typeDecryptShare)
	if err != nil {
		return nil, err
	}
	s := &DecryptShare{Ceremony: d.ceremonyID(), Round: d.u64("round"), From: PartyID(d.u64("sender"))}
	n := d.count(p.CiphertextsFor(MaxDim), "share count")
	if d.err != nil {
		return nil, d.err
	}
	if want := d.off + n*p.polyBytes(); want != len(b) {
		return nil, malformed("decryption share is %d bytes, want %d", len(b), want)
	}
	s.Shares = newPolys(p, n)
	for k := range s.Shares {
		d.poly(p, &s.Shares[k], "share")
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	return s, nil
}

func (e *encoder) commitment(m *KeyCommitment) {
	e.ceremonyID(m.Ceremony)
	e.u64(uint64(m.From))
	e.raw(m.ExchangeKey[:])
	e.digest(m.ShareHash)
	e.signature(m.Signature)
}

func (d *decoder) commitment() *KeyCommitment {
	m := &KeyCommitment{Ceremony: d.ceremonyID(), From: PartyID(d.u64("sender"))}
	copy(m.ExchangeKey[:], d.take(32, "exchange key"))
	m.ShareHash = d.digest("share hash")
	m.Signature = cloneSignature(d.signature("commitment signature"))
	return m
}

// MarshalBinary encodes the key commitment.
func (m *KeyCommitment) MarshalBinary() ([]byte, error) {
	e := newEncoder(typeKeyCommitment, 96+signatureSize(m.Signature))
	e.commitment(m)
	return e.b, nil
}

// DecodeKeyCommitment decodes a key commitment.
func DecodeKeyCommitment(b []byte) (*KeyCommitment, error) {
	d, err := newDecoder(b, typeKeyCommitment)
	if err != nil {
		return nil, err
	}
	m := d.commitment()
	if err := d.done(); err != nil {
		return nil, err
	}
	return m, nil
}

// MarshalBinary encodes the key-generation share (a member's revealed public-key share).
func (m *KeyGenShare) MarshalBinary() ([]byte, error) {
	e := newEncoder(typeKeyGenShare, 32+m.PublicKeyShare.BinarySize())
	e.ceremonyID(m.Ceremony)
	e.u64(uint64(m.From))
	if err := e.poly(m.PublicKeyShare); err != nil {
		return nil, err
	}
	return e.b, nil
}

// DecodeKeyGenShare decodes a key-generation share for parameters p.
func DecodeKeyGenShare(p *Params, b []byte) (*KeyGenShare, error) {
	d, err := newDecoder(b, typeKeyGenShare)
	if err != nil {
		return nil, err
	}
	m := &KeyGenShare{Ceremony: d.ceremonyID(), From: PartyID(d.u64("sender"))}
	m.PublicKeyShare = p.rlwe.RingQ().NewPoly()
	d.poly(p, &m.PublicKeyShare, "public key share")
	if err := d.done(); err != nil {
		return nil, err
	}
	return m, nil
}

// MarshalBinary encodes the directory.
func (m *Directory) MarshalBinary() ([]byte, error) {
	size := 32
	for _, c := range m.Commitments {
		size += 96 + signatureSize(c.Signature)
	}
	e := newEncoder(typeDirectory, size)
	e.ceremonyID(m.Ceremony)
	e.u32(uint32(len(m.Commitments)))
	for _, c := range m.Commitments {
		if c == nil {
			return nil, fmt.Errorf("he: directory with a missing commitment")
		}
		e.commitment(c)
	}
	return e.b, nil
}

// DecodeDirectory decodes a ceremony directory.
func DecodeDirectory(b []byte) (*Directory, error) {
	d, err := newDecoder(b, typeDirectory)
	if err != nil {
		return nil, err
	}
	m := &Directory{Ceremony: d.ceremonyID()}
	n := d.count(maxCommittee, "commitment count")
	if d.err != nil {
		return nil, d.err
	}
	if n > (len(d.b)-d.off)/96 {
		return nil, malformed("%d commitments cannot fit in %d bytes", n, len(d.b)-d.off)
	}
	m.Commitments = make([]*KeyCommitment, n)
	for i := range m.Commitments {
		m.Commitments[i] = d.commitment()
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	return m, nil
}

// maxSealedBox bounds a sealed share: nonce, one polynomial, GCM tag.
func maxSealedBox(p *Params) int { return gcmNonceSize + p.polyBytes() + 16 }

// MarshalBinary encodes the sealed share.
func (m *SealedShare) MarshalBinary() ([]byte, error) {
	e := newEncoder(typeSealedShare, 40+len(m.Box))
	e.ceremonyID(m.Ceremony)
	e.u64(uint64(m.From))
	e.u64(uint64(m.To))
	e.bytes(m.Box)
	return e.b, nil
}

// DecodeSealedShare decodes a sealed share for parameters p.
func DecodeSealedShare(p *Params, b []byte) (*SealedShare, error) {
	d, err := newDecoder(b, typeSealedShare)
	if err != nil {
		return nil, err
	}
	m := &SealedShare{Ceremony: d.ceremonyID(), From: PartyID(d.u64("sender")), To: PartyID(d.u64("recipient"))}
	box := d.bytes(maxSealedBox(p), "sealed box")
	if err := d.done(); err != nil {
		return nil, err
	}
	m.Box = append([]byte(nil), box...)
	return m, nil
}

// MarshalBinary encodes the endorsement.
func (m *Endorsement) MarshalBinary() ([]byte, error) {
	e := newEncoder(typeEndorsement, 32+signatureSize(m.Signature))
	e.ceremonyID(m.Ceremony)
	e.u64(uint64(m.From))
	e.signature(m.Signature)
	return e.b, nil
}

// DecodeEndorsement decodes an endorsement.
func DecodeEndorsement(b []byte) (*Endorsement, error) {
	d, err := newDecoder(b, typeEndorsement)
	if err != nil {
		return nil, err
	}
	m := &Endorsement{Ceremony: d.ceremonyID(), From: PartyID(d.u64("sender"))}
	m.Signature = cloneSignature(d.signature("endorsement signature"))
	if err := d.done(); err != nil {
		return nil, err
	}
	return m, nil
}

func (c *Ceremony) encodeTo(e *encoder) {
	e.ceremonyID(c.ID)
	e.raw(c.Run[:])
	c.Params.encodeTo(e)
	e.u32(uint32(len(c.Committee)))
	for _, id := range c.Committee {
		e.u64(uint64(id))
	}
	e.u32(uint32(c.Threshold))
	e.raw(c.CRS[:])
}

func decodeCeremonyFrom(d *decoder) *Ceremony {
	c := &Ceremony{ID: d.ceremonyID()}
	copy(c.Run[:], d.take(len(c.Run), "run id"))
	c.Params = decodeParamsFrom(d)
	k := d.count(maxCommittee, "committee size")
	if d.err != nil {
		return nil
	}
	if k > (len(d.b)-d.off)/8 {
		d.fail("committee of %d cannot fit in %d bytes", k, len(d.b)-d.off)
		return nil
	}
	c.Committee = make([]PartyID, k)
	for i := range c.Committee {
		c.Committee[i] = PartyID(d.u64("committee member"))
	}
	c.Threshold = d.count(maxCommittee, "threshold")
	copy(c.CRS[:], d.take(32, "reference string"))
	if d.err != nil {
		return nil
	}
	if err := c.validate(); err != nil {
		d.fail("ceremony: %v", err)
		return nil
	}
	return c
}

// MarshalBinary encodes the ceremony description.
func (c *Ceremony) MarshalBinary() ([]byte, error) {
	e := newEncoder(typeCeremony, 144+8*len(c.Committee))
	c.encodeTo(e)
	return e.b, nil
}

// DecodeCeremony decodes and checks a ceremony description.
func DecodeCeremony(b []byte) (*Ceremony, error) {
	d, err := newDecoder(b, typeCeremony)
	if err != nil {
		return nil, err
	}
	c := decodeCeremonyFrom(d)
	if err := d.done(); err != nil {
		return nil, err
	}
	return c, nil
}

func (s *PublicSetup) encodeTo(e *encoder) error {
	s.Ceremony.encodeTo(e)
	if err := e.polys(s.PublicKey.Value[0].Q, s.PublicKey.Value[1].Q); err != nil {
		return err
	}
	e.u32(uint32(len(s.Endorsements)))
	for _, sig := range s.Endorsements {
		e.signature(sig)
	}
	return nil
}

func decodeSetupFrom(d *decoder) *PublicSetup {
	c := decodeCeremonyFrom(d)
	if c == nil || d.err != nil {
		return nil
	}
	var polys [2]ring.Poly
	for i := range polys {
		polys[i] = c.Params.rlwe.RingQ().NewPoly()
		d.poly(c.Params, &polys[i], "public key")
	}
	if d.err != nil {
		return nil
	}
	pk, err := publicKeyFromPolys(c.Params, polys)
	if err != nil {
		d.fail("%v", err)
		return nil
	}
	s := &PublicSetup{Ceremony: *c, PublicKey: pk}
	n := d.count(len(c.Committee), "endorsement count")
	if d.err != nil {
		return nil
	}
	if n > 0 {
		s.Endorsements = make([]Signature, n)
		for i := range s.Endorsements {
			s.Endorsements[i] = cloneSignature(d.signature("endorsement"))
		}
	}
	if d.err != nil {
		return nil
	}
	return s
}

func setupSize(s *PublicSetup) int {
	n := 256 + 8*len(s.Ceremony.Committee) + 2*s.Params().polyBytes()
	for _, sig := range s.Endorsements {
		n += signatureSize(sig)
	}
	return n
}

// MarshalBinary encodes the public setup.
func (s *PublicSetup) MarshalBinary() ([]byte, error) {
	e := newEncoder(typePublicSetup, setupSize(s))
	if err := s.encodeTo(e); err != nil {
		return nil, err
	}
	return e.b, nil
}

// DecodePublicSetup decodes and checks the form of a public setup. Its endorsements are
// checked by PublicSetup.Verify, against the verifier's own trust root.
func DecodePublicSetup(b []byte) (*PublicSetup, error) {
	d, err := newDecoder(b, typePublicSetup)
	if err != nil {
		return nil, err
	}
	s := decodeSetupFrom(d)
	if err := d.done(); err != nil {
		return nil, err
	}
	return s, nil
}

// MarshalBinary encodes the key material, including the member's secret share: store
// the result as a secret (file mode 0600 or encrypted at rest).
func (k *KeyMaterial) MarshalBinary() ([]byte, error) {
	size := setupSize(k.Setup) + k.Setup.Params().polyBytes() + 16
	for _, n := range k.Names {
		size += 4 + len(n)
	}
	e := newEncoder(typeKeyMaterial, size)
	if err := k.Setup.encodeTo(e); err != nil {
		return nil, err
	}
	e.u64(uint64(k.Self))
	e.u32(uint32(len(k.Names)))
	for _, n := range k.Names {
		e.bytes([]byte(n))
	}
	if err := e.poly(k.share.Q); err != nil {
		return nil, err
	}
	return e.b, nil
}

// DecodeKeyMaterial decodes and checks saved key material.
func DecodeKeyMaterial(b []byte) (*KeyMaterial, error) {
	d, err := newDecoder(b, typeKeyMaterial)
	if err != nil {
		return nil, err
	}
	s := decodeSetupFrom(d)
	if d.err != nil {
		return nil, d.err
	}
	k := &KeyMaterial{Setup: s, Self: PartyID(d.u64("member"))}
	n := d.count(len(s.Ceremony.Committee), "name count")
	if d.err == nil && n != len(s.Ceremony.Committee) {
		d.fail("%d names for %d members", n, len(s.Ceremony.Committee))
	}
	if d.err != nil {
		return nil, d.err
	}
	k.Names = make([]string, n)
	for i := range k.Names {
		name := d.bytes(maxNameBytes, "member name")
		if d.err == nil && len(name) == 0 {
			d.fail("empty member name")
		}
		k.Names[i] = string(name)
	}
	k.share.Q = s.Params().rlwe.RingQ().NewPoly()
	d.poly(s.Params(), &k.share.Q, "threshold share")
	if err := d.done(); err != nil {
		return nil, err
	}
	if s.Ceremony.index(k.Self) < 0 {
		return nil, malformed("key material of %d, who is not on the committee", k.Self)
	}
	return k, nil
}

// String names the message kind; used in logs.
func (u *Upload) String() string {
	return fmt.Sprintf("he upload from %d, round %d, %d values in %d ciphertexts", u.From, u.Round, u.Dim, len(u.Ciphertexts))
}
