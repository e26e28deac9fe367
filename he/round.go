package he

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/ring"
)

// MaxDim bounds the length of an update (2^27 values ≈ 0.5 GB of float32).
const MaxDim = 1 << 27

// DefaultMinContributors is the smallest number of distinct, signed uploads an aggregate may
// be decrypted with unless configured otherwise. Two would not do: the aggregate of two
// clients is revealed to the server and (through the model) to the clients, and each of the
// two learns the other's update by subtracting its own. With three, any one client learns only
// the sum of the two others.
const DefaultMinContributors = 3

// minContributorsFloor: an aggregate of one upload is that upload.
const minContributorsFloor = 2

// ErrTooFewContributors is returned when a round has fewer distinct signed uploads than the
// minimum; nothing is decrypted.
var ErrTooFewContributors = errors.New("he: too few distinct contributors to decrypt")

func minContributors(n int) (int, error) {
	if n == 0 {
		return DefaultMinContributors, nil
	}
	if n < minContributorsFloor {
		return 0, fmt.Errorf("he: minimum of %d contributors; an aggregate needs at least %d", n, minContributorsFloor)
	}
	return n, nil
}

// Upload is one client's encrypted, weight-scaled update: ciphertext k carries values
// k·N … k·N+N−1 of the vector (w·x_0, …, w·x_{d−1}, w), zero-padded. The client signs
// (run, setup, round, sender, dimension, digests of the c0 and c1 halves).
type Upload struct {
	Ceremony  CeremonyID
	Round     uint64
	From      PartyID
	Dim       int
	Signature Signature
	// Ciphertexts[k] = (c0, c1) in the coefficient domain.
	Ciphertexts [][2]ring.Poly
}

// Digest labels of an upload's halves: the c1 halves are hashed on their own so that a
// committee member can check them without the c0 halves.
const (
	c0Label = "shoal/he/v2 c0\x00"
	c1Label = "shoal/he/v2 c1\x00"
)

func newHalfHash(label string) hash.Hash {
	h := sha256.New()
	h.Write([]byte(label))
	return h
}

func sum32(h hash.Hash) (d [32]byte) {
	h.Sum(d[:0])
	return d
}

// uploadDigest is what a client signs for its upload.
func uploadDigest(run RunID, setup [32]byte, round uint64, from PartyID, dim int, h0, h1 [32]byte) [32]byte {
	return newStatement(stmtUpload, run).bytes(setup[:]).u64(round).u64(uint64(from)).u64(uint64(dim)).
		bytes(h0[:]).bytes(h1[:]).sum()
}

// halfDigests returns the digests of the c0 and c1 halves of cts.
func halfDigests(cts [][2]ring.Poly) (h0, h1 [32]byte) {
	d0, d1 := newHalfHash(c0Label), newHalfHash(c1Label)
	e := &encoder{}
	for _, ct := range cts {
		e.b = e.b[:0]
		_ = e.poly(ct[0])
		d0.Write(e.b)
		e.b = e.b[:0]
		_ = e.poly(ct[1])
		d1.Write(e.b)
	}
	return sum32(d0), sum32(d1)
}

// Encryptor is a client's encryptor under the collective public key. It is safe for
// use by one goroutine at a time; Encrypt itself encrypts ciphertexts in parallel.
type Encryptor struct {
	setup   *PublicSetup
	digest  [32]byte
	p       *Params
	base    *rlwe.Encryptor
	id      Identity
	workers int
}

// NewEncryptor verifies the setup against the client's own trust root (every committee
// member must have endorsed the public key, see PublicSetup.Verify) and returns an
// encryptor for its public key that signs uploads with id. Lattigo draws the encryption
// randomness from crypto/rand.
func NewEncryptor(setup *PublicSetup, id Identity, trust Trust) (*Encryptor, error) {
	if setup == nil || setup.PublicKey == nil || setup.Ceremony.Params == nil {
		return nil, errors.New("he: incomplete public setup")
	}
	if err := id.check(); err != nil {
		return nil, err
	}
	if _, err := setup.Verify(trust); err != nil {
		return nil, err
	}
	p := setup.Params()
	return &Encryptor{setup: setup, digest: setup.Digest(), p: p, base: rlwe.NewEncryptor(p.rlwe, setup.PublicKey),
		id: id, workers: runtime.GOMAXPROCS(0)}, nil
}

// WithIdentity returns an encryptor for the same, already verified setup that signs with
// another identity: for simulations, where one process plays many clients.
func (e *Encryptor) WithIdentity(id Identity) (*Encryptor, error) {
	if err := id.check(); err != nil {
		return nil, err
	}
	c := *e
	c.base = e.base.ShallowCopy()
	c.id = id
	return &c, nil
}

// SetWorkers sets how many goroutines Encrypt uses (default GOMAXPROCS; 1 = serial).
func (e *Encryptor) SetWorkers(n int) {
	e.workers = max(n, 1)
}

// Encrypt scales update by weight, packs it with the weight into ciphertexts, encrypts
// them and signs the upload. update must be finite and every w·x_i, like w, within Capacity.
func (e *Encryptor) Encrypt(round uint64, from PartyID, update []float32, weight float64) (*Upload, error) {
	p := e.p
	if len(update) == 0 || len(update) > MaxDim {
		return nil, fmt.Errorf("he: update of %d values outside [1, %d]", len(update), MaxDim)
	}
	if from == 0 {
		return nil, errors.New("he: upload from reserved party 0")
	}
	capacity := p.Capacity()
	if math.IsNaN(weight) || weight <= 0 || weight > capacity {
		return nil, fmt.Errorf("he: weight %v outside (0, %g]", weight, capacity)
	}
	for i, x := range update {
		v := float64(x) * weight
		if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > capacity {
			return nil, fmt.Errorf("he: update value %d (%v × weight %v) is not finite or exceeds capacity %g", i, x, weight, capacity)
		}
	}
	nct := p.CiphertextsFor(len(update))
	u := &Upload{Ceremony: e.setup.Ceremony.ID, Round: round, From: from, Dim: len(update), Ciphertexts: make([][2]ring.Poly, nct)}
	workers := min(e.workers, nct)
	if workers <= 1 {
		if err := e.encryptRange(e.base, u, update, weight, 0, nct); err != nil {
			return nil, err
		}
	} else {
		var wg sync.WaitGroup
		errs := make([]error, workers)
		for w := 0; w < workers; w++ {
			lo, hi := w*nct/workers, (w+1)*nct/workers
			enc := e.base.ShallowCopy()
			wg.Go(func() { errs[w] = e.encryptRange(enc, u, update, weight, lo, hi) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	h0, h1 := halfDigests(u.Ciphertexts)
	sig, err := e.id.sign(uploadDigest(e.setup.Ceremony.Run, e.digest, round, from, u.Dim, h0, h1))
	if err != nil {
		return nil, err
	}
	u.Signature = sig
	return u, nil
}

func (e *Encryptor) encryptRange(enc *rlwe.Encryptor, u *Upload, update []float32, weight float64, lo, hi int) error {
	p := e.p
	n := p.N()
	pt := rlwe.NewPlaintext(p.rlwe, p.rlwe.MaxLevel())
	pt.IsNTT = false
	for k := lo; k < hi; k++ {
		coeffs := pt.Value.Coeffs
		for i := 0; i < n; i++ {
			idx := k*n + i
			switch {
			case idx < len(update):
				p.encodeValue(float64(update[idx])*weight, coeffs, i)
			case idx == len(update):
				p.encodeValue(weight, coeffs, i)
			default:
				p.encodeValue(0, coeffs, i)
			}
		}
		ct := rlwe.NewCiphertext(p.rlwe, 1, p.rlwe.MaxLevel())
		if err := enc.Encrypt(pt, ct); err != nil {
			return fmt.Errorf("he: encrypting ciphertext %d: %w", k, err)
		}
		u.Ciphertexts[k] = [2]ring.Poly{ct.Value[0], ct.Value[1]}
	}
	return nil
}

// Contribution is one signed upload as the committee sees it: the sender, the digests of
// its c0 and c1 halves, and the sender's signature over them (with run, setup, round and
// dimension). A member recomputes the c1 digest from the c1 halves it is sent.
type Contribution struct {
	From      PartyID
	C0Digest  [32]byte
	C1Digest  [32]byte
	Signature Signature
}

// ApprovalRequest asks every reachable committee member to approve a round's contributor
// set (its manifest) before anything is decrypted.
type ApprovalRequest struct {
	Ceremony      CeremonyID
	Round         uint64
	Dim           int
	Contributions []Contribution // sorted by sender
}

// Approval is a member's signature on a round's manifest. A member approves one manifest
// per round, and never a round older than one it already approved or decrypted.
type Approval struct {
	Ceremony  CeremonyID
	Round     uint64
	From      PartyID
	Signature Signature
}

// manifestDigest binds a round's contributor set under a setup.
func manifestDigest(setup [32]byte, round uint64, dim int, cs []Contribution) [32]byte {
	h := sha256.New()
	h.Write([]byte("shoal/he/v2 manifest\x00"))
	h.Write(setup[:])
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], round)
	h.Write(b[:])
	binary.BigEndian.PutUint64(b[:], uint64(dim))
	h.Write(b[:])
	binary.BigEndian.PutUint64(b[:], uint64(len(cs)))
	h.Write(b[:])
	for _, c := range cs {
		binary.BigEndian.PutUint64(b[:], uint64(c.From))
		h.Write(b[:])
		h.Write(c.C0Digest[:])
		h.Write(c.C1Digest[:])
	}
	return sum32(h)
}

func approvalDigest(run RunID, setup [32]byte, round uint64, from PartyID, manifest [32]byte) [32]byte {
	return newStatement(stmtApproval, run).bytes(setup[:]).u64(round).u64(uint64(from)).bytes(manifest[:]).sum()
}

// DecryptRequest asks the active committee members for decryption shares of a round's
// aggregate. It carries the manifest, at least ApprovalQuorum approvals of it, and the c1
// halves of every contribution: each member checks them against the signed digests and
// adds them itself, so it only ever decrypts the sum of the approved, signed uploads.
type DecryptRequest struct {
	Ceremony      CeremonyID
	Round         uint64
	Dim           int
	Active        []PartyID // exactly Threshold members, sorted
	Contributions []Contribution
	Approvals     []Approval // sorted by member
	// C1[i][k] is the c1 half of ciphertext k of contribution i.
	C1 [][]ring.Poly

	c1raw [][]byte // the aggregator's copy of C1, encoded, when C1 is nil
	c1nct int      // ciphertexts per contribution in c1raw
}

// DecryptShare is one active member's decryption share: for each ciphertext,
// s_i'·c1 + e_i with s_i' its additive share for the active set and e_i smudging noise.
type DecryptShare struct {
	Ceremony CeremonyID
	Round    uint64
	From     PartyID
	Shares   []ring.Poly
}

// Aggregate is the only plaintext the server obtains: the weighted sum and total weight.
type Aggregate struct {
	Round        uint64
	Contributors []PartyID
	Sum          []float64
	TotalWeight  float64
}

// Mean returns Sum / TotalWeight.
func (a *Aggregate) Mean() []float64 {
	out := make([]float64, len(a.Sum))
	for i, v := range a.Sum {
		out[i] = v / a.TotalWeight
	}
	return out
}

// AggregatorConfig is the server's policy for a round.
type AggregatorConfig struct {
	// Trust, if set, verifies every upload's signature and every approval on arrival, so
	// that one bad message is dropped rather than making the committee refuse the round.
	// Without it the server relays what it gets and the committee alone checks.
	Trust Trust
	// MinContributors: the round is abandoned below it (0: DefaultMinContributors). The
	// committee members apply their own minimum, whatever the server's.
	MinContributors int
}

// Aggregator is the server's state for one encrypted round: it adds uploads, keeps each
// contribution's c1 halves for the committee, collects approvals, asks for decryption
// shares and decodes the aggregate. It never holds a secret key.
type Aggregator struct {
	setup    *PublicSetup
	digest   [32]byte
	p        *Params
	round    uint64
	dim      int
	ver      *verifier
	names    []string // committee names, when verifying
	min      int
	quorum   int
	sum      [][2]ring.Poly
	contribs map[PartyID]*contribution
	order    []PartyID // arrival order
	byName   map[string]bool
	appReq   *ApprovalRequest
	manifest [32]byte
	approved map[PartyID]Approval
	req      *DecryptRequest
	shares   map[PartyID]bool // active members whose share is in shareSum
	shareSum []ring.Poly      // Σ of the received shares, per ciphertext
	result   *Aggregate
}

type contribution struct {
	c  Contribution
	c1 []byte // the encoded c1 halves, ciphertext order
}

// NewAggregator starts round `round` for updates of dim values.
func NewAggregator(setup *PublicSetup, round uint64, dim int, cfg AggregatorConfig) (*Aggregator, error) {
	if setup == nil || setup.Ceremony.Params == nil || setup.PublicKey == nil {
		return nil, errors.New("he: incomplete public setup")
	}
	if dim < 1 || dim > MaxDim {
		return nil, fmt.Errorf("he: dimension %d outside [1, %d]", dim, MaxDim)
	}
	mc, err := minContributors(cfg.MinContributors)
	if err != nil {
		return nil, err
	}
	p := setup.Params()
	c := &setup.Ceremony
	a := &Aggregator{setup: setup, digest: setup.Digest(), p: p, round: round, dim: dim, min: mc,
		quorum:   ApprovalQuorum(len(c.Committee), c.Threshold),
		contribs: map[PartyID]*contribution{}, byName: map[string]bool{}, approved: map[PartyID]Approval{}}
	if cfg.Trust != nil {
		if a.ver, err = newVerifier(cfg.Trust); err != nil {
			return nil, err
		}
		if a.names, err = setup.verify(a.ver); err != nil {
			return nil, err
		}
	}
	a.sum = make([][2]ring.Poly, p.CiphertextsFor(dim))
	rq := p.rlwe.RingQ()
	for k := range a.sum {
		a.sum[k] = [2]ring.Poly{rq.NewPoly(), rq.NewPoly()}
	}
	return a, nil
}

func (a *Aggregator) checkHeader(ceremony CeremonyID, round uint64, from PartyID, dim, nct int) error {
	if a.appReq != nil {
		return fmt.Errorf("he: upload from %d after the round closed", from)
	}
	if ceremony != a.setup.Ceremony.ID {
		return fmt.Errorf("he: upload from %d is for another ceremony", from)
	}
	if round != a.round {
		return fmt.Errorf("he: upload from %d is for round %d, not %d", from, round, a.round)
	}
	if from == 0 {
		return errors.New("he: upload from reserved party 0")
	}
	if a.contribs[from] != nil {
		return fmt.Errorf("he: duplicate upload from %d", from)
	}
	if dim != a.dim || nct != len(a.sum) {
		return fmt.Errorf("he: upload from %d has dimension %d in %d ciphertexts, want %d in %d", from, dim, nct, a.dim, len(a.sum))
	}
	return nil
}

// Add adds one decoded upload. A rejected upload leaves the aggregate unchanged.
func (a *Aggregator) Add(u *Upload) error {
	if u == nil {
		return errors.New("he: nil upload")
	}
	b, err := u.MarshalBinary()
	if err != nil {
		return err
	}
	return a.AddEncoded(b)
}

// AddEncoded decodes an upload straight into the aggregate, keeping only its c1 halves
// for the committee: the whole message is validated (and its signature verified, with a
// Trust) before it counts, and a rejected upload leaves the aggregate unchanged.
func (a *Aggregator) AddEncoded(b []byte) error {
	d, err := newDecoder(b, typeUpload)
	if err != nil {
		return err
	}
	ceremony, round, from, dim, nct := decodeUploadHeader(d, a.p)
	sig := d.signature("upload signature")
	if err := d.err; err != nil {
		return err
	}
	if err := a.checkHeader(ceremony, round, from, dim, nct); err != nil {
		return err
	}
	pb := a.p.polyBytes()
	if want := d.off + nct*2*pb; want != len(b) {
		return malformed("upload from %d is %d bytes, want %d", from, len(b), want)
	}
	body := b[d.off:]
	// Validate while adding, in one pass; on the first bad coefficient, subtract what
	// was already added, so a rejected upload leaves the aggregate unchanged.
	h0, h1 := newHalfHash(c0Label), newHalfHash(c1Label)
	c1 := make([]byte, 0, nct*pb)
	for k := 0; k < 2*nct; k++ {
		raw := body[k*pb : (k+1)*pb]
		dst := a.sum[k/2][k%2]
		if done, err := addPolyChecked(a.p, raw, dst); err != nil {
			subPolyBytes(a.p, raw, dst, done)
			a.subtract(body, k)
			return malformed("upload from %d, ciphertext %d: %v", from, k/2, err)
		}
		if k%2 == 0 {
			h0.Write(raw)
		} else {
			h1.Write(raw)
			c1 = append(c1, raw...)
		}
	}
	c := Contribution{From: from, C0Digest: sum32(h0), C1Digest: sum32(h1), Signature: cloneSignature(sig)}
	if a.ver != nil {
		name, err := a.ver.verify(c.Signature, uploadDigest(a.setup.Ceremony.Run, a.digest, round, from, dim, c.C0Digest, c.C1Digest))
		if err == nil && a.byName[name] {
			err = untrusted("a second upload by %q in round %d", name, round)
		}
		if err != nil {
			a.subtract(body, 2*nct)
			return fmt.Errorf("he: upload from %d: %w", from, err)
		}
		a.byName[name] = true
	}
	a.contribs[from] = &contribution{c: c, c1: c1}
	a.order = append(a.order, from)
	return nil
}

// subtract removes the first count polynomials of an upload body from the aggregate.
func (a *Aggregator) subtract(body []byte, count int) {
	pb := a.p.polyBytes()
	for kk := 0; kk < count; kk++ {
		subPolyBytes(a.p, body[kk*pb:(kk+1)*pb], a.sum[kk/2][kk%2], len(a.p.moduli)*a.p.N())
	}
}

func cloneSignature(s Signature) Signature {
	return Signature{Certificate: slices.Clone(s.Certificate), Value: slices.Clone(s.Value)}
}

// addPolyChecked adds the polynomial encoded in raw (Lattigo's format, length already
// checked) into dst, checking the header and that every coefficient is reduced. It
// returns how many coefficients (row-major) were added before an error.
func addPolyChecked(p *Params, raw []byte, dst ring.Poly) (int, error) {
	L, n := len(p.moduli), p.N()
	if rows := binary.LittleEndian.Uint64(raw); rows != uint64(L) {
		return 0, fmt.Errorf("polynomial has %d moduli, want %d", rows, L)
	}
	off := 8
	for j, q := range p.moduli {
		if got := binary.LittleEndian.Uint64(raw[off:]); got != uint64(n) {
			return j * n, fmt.Errorf("polynomial row %d has %d coefficients, want %d", j, got, n)
		}
		off += 8
		row := dst.Coeffs[j][:n]
		src := raw[off : off+8*n]
		src = src[:8*len(row)] // lets the compiler drop the bounds checks below
		for i := range row {
			v := binary.LittleEndian.Uint64(src[8*i : 8*i+8])
			if v >= q {
				return j*n + i, fmt.Errorf("coefficient %d of row %d not reduced modulo %d", i, j, q)
			}
			c := row[i] + v
			if c >= q {
				c -= q
			}
			row[i] = c
		}
		off += 8 * n
	}
	return L * n, nil
}

// subPolyBytes subtracts the first count coefficients (row-major) of a polynomial
// encoding from dst: the undo of addPolyChecked.
func subPolyBytes(p *Params, raw []byte, dst ring.Poly, count int) {
	n := p.N()
	off := 8
	for j, q := range p.moduli {
		off += 8
		src := raw[off : off+8*n]
		row := dst.Coeffs[j]
		for i := 0; i < n && j*n+i < count; i++ {
			v := binary.LittleEndian.Uint64(src[8*i:])
			c := row[i] + q - v
			if c >= q {
				c -= q
			}
			row[i] = c
		}
		off += 8 * n
	}
}

// Contributors returns the parties whose upload was added, in arrival order.
func (a *Aggregator) Contributors() []PartyID { return slices.Clone(a.order) }

// ApprovalRequest closes the round to uploads and returns the manifest every reachable
// committee member is asked to approve. Fewer than the minimum of contributors:
// ErrTooFewContributors, nothing to decrypt.
func (a *Aggregator) ApprovalRequest() (*ApprovalRequest, error) {
	if a.appReq != nil {
		return a.appReq, nil
	}
	if len(a.order) < a.min {
		return nil, fmt.Errorf("%w: %d uploads, at least %d needed (fewer would expose individual updates)", ErrTooFewContributors, len(a.order), a.min)
	}
	ids := slices.Clone(a.order)
	slices.Sort(ids)
	r := &ApprovalRequest{Ceremony: a.setup.Ceremony.ID, Round: a.round, Dim: a.dim, Contributions: make([]Contribution, len(ids))}
	for i, id := range ids {
		r.Contributions[i] = a.contribs[id].c
	}
	a.appReq = r
	a.manifest = manifestDigest(a.digest, a.round, a.dim, r.Contributions)
	return r, nil
}

// AddApproval records one member's approval of the manifest.
func (a *Aggregator) AddApproval(ap *Approval) error {
	if ap == nil {
		return errors.New("he: nil approval")
	}
	c := &a.setup.Ceremony
	if a.appReq == nil {
		return errors.New("he: approval before the approval request")
	}
	if ap.Ceremony != c.ID || ap.Round != a.round {
		return fmt.Errorf("he: approval from %d is for another ceremony or round", ap.From)
	}
	j := c.index(ap.From)
	if j < 0 {
		return fmt.Errorf("he: approval from non-member %d", ap.From)
	}
	if _, dup := a.approved[ap.From]; dup {
		return fmt.Errorf("he: duplicate approval from %d", ap.From)
	}
	if len(ap.Signature.Value) == 0 {
		return fmt.Errorf("he: unsigned approval from %d", ap.From)
	}
	if a.ver != nil {
		name, err := a.ver.verify(ap.Signature, approvalDigest(c.Run, a.digest, a.round, ap.From, a.manifest))
		if err == nil && name != a.names[j] {
			err = untrusted("approval for member %d signed by %q", ap.From, name)
		}
		if err != nil {
			return fmt.Errorf("he: approval from %d: %w", ap.From, err)
		}
	}
	a.approved[ap.From] = Approval{Ceremony: ap.Ceremony, Round: ap.Round, From: ap.From, Signature: cloneSignature(ap.Signature)}
	return nil
}

// AddApprovalEncoded decodes and records an approval.
func (a *Aggregator) AddApprovalEncoded(b []byte) error {
	ap, err := DecodeApproval(b)
	if err != nil {
		return err
	}
	return a.AddApproval(ap)
}

// Approvers returns the members whose approval was recorded, sorted.
func (a *Aggregator) Approvers() []PartyID {
	out := make([]PartyID, 0, len(a.approved))
	for id := range a.approved {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// DecryptRequest returns the request for the active members: the first Threshold of
// active (which must all be committee members), once ApprovalQuorum members approved the
// manifest. A member answers one request per round: if an active member drops before
// answering, the round is lost.
func (a *Aggregator) DecryptRequest(active []PartyID) (*DecryptRequest, error) {
	c := &a.setup.Ceremony
	if a.appReq == nil {
		if _, err := a.ApprovalRequest(); err != nil {
			return nil, err
		}
	}
	if len(a.approved) < a.quorum {
		return nil, fmt.Errorf("%w: %d approvals of the round's contributors, quorum %d", ErrNotEnoughMembers, len(a.approved), a.quorum)
	}
	set := make([]PartyID, 0, c.Threshold)
	for _, id := range active {
		if c.index(id) < 0 {
			return nil, fmt.Errorf("he: %d is not a committee member", id)
		}
		if !slices.Contains(set, id) && len(set) < c.Threshold {
			set = append(set, id)
		}
	}
	if len(set) < c.Threshold {
		return nil, fmt.Errorf("%w: %d online, threshold %d; round abandoned", ErrNotEnoughMembers, len(set), c.Threshold)
	}
	slices.Sort(set)
	r := &DecryptRequest{Ceremony: c.ID, Round: a.round, Dim: a.dim, Active: set,
		Contributions: a.appReq.Contributions, c1raw: make([][]byte, len(a.appReq.Contributions)), c1nct: len(a.sum)}
	for _, id := range a.Approvers() {
		r.Approvals = append(r.Approvals, a.approved[id])
	}
	for i, ct := range a.appReq.Contributions {
		r.c1raw[i] = a.contribs[ct.From].c1
	}
	a.req = r
	a.shares = make(map[PartyID]bool, len(set))
	if a.shareSum == nil {
		a.shareSum = newPolys(a.p, len(a.sum))
	} else {
		for k := range a.shareSum {
			a.shareSum[k].Zero()
		}
	}
	return r, nil
}

// checkShareHeader validates who sent a share for the current request.
func (a *Aggregator) checkShareHeader(ceremony CeremonyID, round uint64, from PartyID, n int) error {
	if a.req == nil {
		return errors.New("he: decryption share before a request")
	}
	if ceremony != a.req.Ceremony || round != a.round {
		return fmt.Errorf("he: decryption share from %d is for another ceremony or round", from)
	}
	if !slices.Contains(a.req.Active, from) {
		return fmt.Errorf("he: decryption share from %d, which is not in the active set %v", from, a.req.Active)
	}
	if a.shares[from] {
		return fmt.Errorf("he: duplicate decryption share from %d", from)
	}
	if n != len(a.sum) {
		return fmt.Errorf("he: decryption share from %d has %d polynomials, want %d", from, n, len(a.sum))
	}
	return nil
}

// AddShare adds one active member's decryption share for the current request.
func (a *Aggregator) AddShare(s *DecryptShare) error {
	if s == nil {
		return errors.New("he: nil decryption share")
	}
	if err := a.checkShareHeader(s.Ceremony, s.Round, s.From, len(s.Shares)); err != nil {
		return err
	}
	for k := range s.Shares {
		if err := checkPolyValues(a.p, s.Shares[k]); err != nil {
			return fmt.Errorf("he: decryption share from %d: %w", s.From, err)
		}
	}
	rq := a.p.rlwe.RingQ()
	for k := range s.Shares {
		rq.Add(a.shareSum[k], s.Shares[k], a.shareSum[k])
	}
	a.shares[s.From] = true
	return nil
}

// AddShareEncoded decodes a share straight into the running sum of shares, validating
// while adding and rolling back on a malformed polynomial (like AddEncoded).
func (a *Aggregator) AddShareEncoded(b []byte) error {
	d, err := newDecoder(b, typeDecryptShare)
	if err != nil {
		return err
	}
	ceremony, round, from := d.ceremonyID(), d.u64("round"), PartyID(d.u64("sender"))
	n := d.count(a.p.CiphertextsFor(MaxDim), "share count")
	if d.err != nil {
		return d.err
	}
	if err := a.checkShareHeader(ceremony, round, from, n); err != nil {
		return err
	}
	pb := a.p.polyBytes()
	if want := d.off + n*pb; want != len(b) {
		return malformed("decryption share from %d is %d bytes, want %d", from, len(b), want)
	}
	body := b[d.off:]
	for k := 0; k < n; k++ {
		if done, err := addPolyChecked(a.p, body[k*pb:(k+1)*pb], a.shareSum[k]); err != nil {
			subPolyBytes(a.p, body[k*pb:(k+1)*pb], a.shareSum[k], done)
			for kk := 0; kk < k; kk++ {
				subPolyBytes(a.p, body[kk*pb:(kk+1)*pb], a.shareSum[kk], len(a.p.moduli)*a.p.N())
			}
			return malformed("decryption share from %d, polynomial %d: %v", from, k, err)
		}
	}
	a.shares[from] = true
	return nil
}

// Finish combines the shares of all active members and decodes the aggregate. With any
// active member's share missing it returns ErrNotEnoughMembers and decrypts nothing.
func (a *Aggregator) Finish() (*Aggregate, error) {
	if a.result != nil {
		return a.result, nil
	}
	if a.req == nil {
		return nil, errors.New("he: no decryption request issued")
	}
	if len(a.shares) < len(a.req.Active) {
		var missing []PartyID
		for _, id := range a.req.Active {
			if !a.shares[id] {
				missing = append(missing, id)
			}
		}
		return nil, fmt.Errorf("%w: no share yet from %v", ErrNotEnoughMembers, missing)
	}
	p := a.p
	rq := p.rlwe.RingQ()
	n := p.N()
	acc := rq.NewPoly()
	digits := make([]int64, len(p.moduli))
	out := &Aggregate{Round: a.round, Contributors: slices.Clone(a.order), Sum: make([]float64, a.dim)}
	for k := range a.sum {
		rq.Add(a.sum[k][0], a.shareSum[k], acc)
		lo := k * n
		if count := min(n, a.dim-lo); count > 0 {
			p.decodeRange(acc.Coeffs, out.Sum[lo:lo+count], digits)
		}
		if w := a.dim - lo; w >= 0 && w < n {
			out.TotalWeight = p.decodeValue(acc.Coeffs, w, digits)
		}
	}
	a.result = out
	return out, nil
}

// checkPolyValues checks shape and reduction of an in-memory polynomial.
func checkPolyValues(p *Params, pol ring.Poly) error {
	if len(pol.Coeffs) != len(p.moduli) {
		return fmt.Errorf("polynomial has %d moduli, want %d", len(pol.Coeffs), len(p.moduli))
	}
	for j, q := range p.moduli {
		row := pol.Coeffs[j]
		if len(row) != p.N() {
			return fmt.Errorf("polynomial row %d has %d coefficients, want %d", j, len(row), p.N())
		}
		for _, c := range row {
			if c >= q {
				return fmt.Errorf("coefficient not reduced modulo %d", q)
			}
		}
	}
	return nil
}
