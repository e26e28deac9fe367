package he

import (
	"fmt"

	"github.com/tuneinsight/lattigo/v6/ring"
)

// Wire formats. Every message: "SHHE", version, type, then big-endian fixed-size fields;
// polynomials are Lattigo's MarshalBinary output, whose header and coefficient ranges
// are checked against the parameters before Lattigo parses them. Decoders take the
// parameters when the message does not carry them, reject any trailing byte, and
// check counts before allocating.

func (e *encoder) ceremonyID(id CeremonyID) { e.raw(id[:]) }

func (d *decoder) ceremonyID() (id CeremonyID) {
	copy(id[:], d.take(len(id), "ceremony id"))
	return id
}

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
	size := 16 + 8 + 8 + 8
	if len(u.Ciphertexts) > 0 {
		size += len(u.Ciphertexts) * (u.Ciphertexts[0][0].BinarySize() + u.Ciphertexts[0][1].BinarySize())
	}
	e := appendEncoder(dst, typeUpload, size)
	e.ceremonyID(u.Ceremony)
	e.u64(u.Round)
	e.u64(uint64(u.From))
	e.u32(uint32(u.Dim))
	e.u32(uint32(len(u.Ciphertexts)))
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

// DecodeUpload decodes and validates an upload for parameters p.
func DecodeUpload(p *Params, b []byte) (*Upload, error) {
	d, err := newDecoder(b, typeUpload)
	if err != nil {
		return nil, err
	}
	u := &Upload{}
	u.Ceremony, u.Round, u.From, u.Dim, _ = decodeUploadHeader(d, p)
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

// MarshalBinary encodes the request.
func (r *DecryptRequest) MarshalBinary() ([]byte, error) { return r.AppendBinary(nil) }

// AppendBinary appends the encoded request to dst (encoding.BinaryAppender).
func (r *DecryptRequest) AppendBinary(dst []byte) ([]byte, error) {
	e := appendEncoder(dst, typeDecryptRequest, 64+8*len(r.Active)+len(r.C1)*polySize(r.C1))
	e.ceremonyID(r.Ceremony)
	e.u64(r.Round)
	e.u32(uint32(r.Dim))
	e.u32(uint32(r.Contributors))
	e.u32(uint32(len(r.Active)))
	for _, id := range r.Active {
		e.u64(uint64(id))
	}
	e.u32(uint32(len(r.C1)))
	if err := e.polys(r.C1...); err != nil {
		return nil, err
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
	r.Contributors = d.count(1<<31-1, "contributors")
	nActive := d.count(maxCommittee, "active set size")
	if d.err != nil {
		return nil, 0
	}
	r.Active = make([]PartyID, nActive)
	for i := range r.Active {
		r.Active[i] = PartyID(d.u64("active member"))
	}
	nct := d.count(p.CiphertextsFor(MaxDim), "ciphertext count")
	if d.err == nil && (r.Dim < 1 || nct != p.CiphertextsFor(r.Dim)) {
		d.fail("%d ciphertexts cannot carry dimension %d", nct, r.Dim)
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
	if want := d.off + nct*p.polyBytes(); want != len(b) {
		return nil, malformed("decryption request is %d bytes, want %d", len(b), want)
	}
	r.C1 = newPolys(p, nct)
	for k := range r.C1 {
		d.poly(p, &r.C1[k], "ciphertext c1")
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

// MarshalBinary encodes the key-generation share.
func (m *KeyGenShare) MarshalBinary() ([]byte, error) {
	e := newEncoder(typeKeyGenShare, 64+m.PublicKeyShare.BinarySize())
	e.ceremonyID(m.Ceremony)
	e.u64(uint64(m.From))
	e.raw(m.ExchangeKey[:])
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
	copy(m.ExchangeKey[:], d.take(32, "exchange key"))
	m.PublicKeyShare = p.rlwe.RingQ().NewPoly()
	d.poly(p, &m.PublicKeyShare, "public key share")
	if err := d.done(); err != nil {
		return nil, err
	}
	return m, nil
}

// MarshalBinary encodes the directory.
func (m *Directory) MarshalBinary() ([]byte, error) {
	e := newEncoder(typeDirectory, 32+32*len(m.ExchangeKeys)+2*m.PublicKey[0].BinarySize())
	e.ceremonyID(m.Ceremony)
	e.u32(uint32(len(m.ExchangeKeys)))
	for _, k := range m.ExchangeKeys {
		e.raw(k[:])
	}
	if err := e.polys(m.PublicKey[0], m.PublicKey[1]); err != nil {
		return nil, err
	}
	return e.b, nil
}

// DecodeDirectory decodes a ceremony directory for parameters p.
func DecodeDirectory(p *Params, b []byte) (*Directory, error) {
	d, err := newDecoder(b, typeDirectory)
	if err != nil {
		return nil, err
	}
	m := &Directory{Ceremony: d.ceremonyID()}
	n := d.count(maxCommittee, "exchange key count")
	if d.err != nil {
		return nil, d.err
	}
	if want := d.off + 32*n + 2*p.polyBytes(); want != len(b) {
		return nil, malformed("directory is %d bytes, want %d", len(b), want)
	}
	m.ExchangeKeys = make([][32]byte, n)
	for i := range m.ExchangeKeys {
		copy(m.ExchangeKeys[i][:], d.take(32, "exchange key"))
	}
	for i := range m.PublicKey {
		m.PublicKey[i] = p.rlwe.RingQ().NewPoly()
		d.poly(p, &m.PublicKey[i], "public key")
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

func (c *Ceremony) encodeTo(e *encoder) {
	e.ceremonyID(c.ID)
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
	c.Params = decodeParamsFrom(d)
	k := d.count(maxCommittee, "committee size")
	if d.err != nil {
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
	e := newEncoder(typeCeremony, 128+8*len(c.Committee))
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
	return e.polys(s.PublicKey.Value[0].Q, s.PublicKey.Value[1].Q)
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
	return &PublicSetup{Ceremony: *c, PublicKey: pk}
}

// MarshalBinary encodes the public setup.
func (s *PublicSetup) MarshalBinary() ([]byte, error) {
	e := newEncoder(typePublicSetup, 256+8*len(s.Ceremony.Committee)+2*s.Params().polyBytes())
	if err := s.encodeTo(e); err != nil {
		return nil, err
	}
	return e.b, nil
}

// DecodePublicSetup decodes and checks a public setup.
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
	e := newEncoder(typeKeyMaterial, 256+8*len(k.Setup.Ceremony.Committee)+3*k.Setup.Params().polyBytes())
	if err := k.Setup.encodeTo(e); err != nil {
		return nil, err
	}
	e.u64(uint64(k.Self))
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
