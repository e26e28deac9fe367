package he

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/multiparty"
	"github.com/tuneinsight/lattigo/v6/ring"
)

// MaxDim bounds the length of an update (2^27 values ≈ 0.5 GB of float32).
const MaxDim = 1 << 27

// MinContributors is the smallest number of uploads an aggregate may be decrypted with:
// decrypting one upload would reveal an individual update.
const MinContributors = 2

// MaxSharesPerRound bounds how many decryption shares a member gives for one round (a
// retry with another active set after a member drops). Every extra decryption of the
// same aggregate averages its smudging noise, so the budget is small.
const MaxSharesPerRound = 3

// Upload is one client's encrypted, weight-scaled update: ciphertext k carries values
// k·N … k·N+N−1 of the vector (w·x_0, …, w·x_{d−1}, w), zero-padded.
type Upload struct {
	Ceremony CeremonyID
	Round    uint64
	From     PartyID
	Dim      int
	// Ciphertexts[k] = (c0, c1) in the coefficient domain.
	Ciphertexts [][2]ring.Poly
}

// Encryptor is a client's encryptor under the collective public key. It is safe for
// use by one goroutine at a time; Encrypt itself encrypts ciphertexts in parallel.
type Encryptor struct {
	setup   *PublicSetup
	p       *Params
	base    *rlwe.Encryptor
	workers int
}

// NewEncryptor returns an encryptor for the setup's public key. Lattigo draws the
// encryption randomness from crypto/rand.
func NewEncryptor(setup *PublicSetup) (*Encryptor, error) {
	if setup == nil || setup.PublicKey == nil || setup.Ceremony.Params == nil {
		return nil, errors.New("he: incomplete public setup")
	}
	p := setup.Params()
	return &Encryptor{setup: setup, p: p, base: rlwe.NewEncryptor(p.rlwe, setup.PublicKey), workers: runtime.GOMAXPROCS(0)}, nil
}

// SetWorkers sets how many goroutines Encrypt uses (default GOMAXPROCS; 1 = serial).
func (e *Encryptor) SetWorkers(n int) {
	e.workers = max(n, 1)
}

// Encrypt scales update by weight, packs it with the weight into ciphertexts and
// encrypts them. update must be finite and every w·x_i, like w, within Capacity.
func (e *Encryptor) Encrypt(round uint64, from PartyID, update []float32, weight float64) (*Upload, error) {
	p := e.p
	if len(update) == 0 || len(update) > MaxDim {
		return nil, fmt.Errorf("he: update of %d values outside [1, %d]", len(update), MaxDim)
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
		return u, e.encryptRange(e.base, u, update, weight, 0, nct)
	}
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := 0; w < workers; w++ {
		lo, hi := w*nct/workers, (w+1)*nct/workers
		enc := e.base.ShallowCopy()
		wg.Go(func() { errs[w] = e.encryptRange(enc, u, update, weight, lo, hi) })
	}
	wg.Wait()
	return u, errors.Join(errs...)
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

// DecryptRequest asks the active committee members for decryption shares of an
// aggregate. It carries only the c1 half of each aggregate ciphertext (all a share
// depends on).
type DecryptRequest struct {
	Ceremony     CeremonyID
	Round        uint64
	Dim          int
	Contributors int
	Active       []PartyID // exactly Threshold members, sorted
	C1           []ring.Poly
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

// Aggregator is the server's state for one encrypted round: it adds uploads, asks the
// committee for decryption shares and decodes the aggregate. It never holds a secret key.
type Aggregator struct {
	setup        *PublicSetup
	p            *Params
	round        uint64
	dim          int
	sum          [][2]ring.Poly
	contributors []PartyID
	seen         map[PartyID]bool
	req          *DecryptRequest
	shares       map[PartyID]bool // active members whose share is in shareSum
	shareSum     []ring.Poly      // Σ of the received shares, per ciphertext
	result       *Aggregate
}

// NewAggregator starts round `round` for updates of dim values.
func NewAggregator(setup *PublicSetup, round uint64, dim int) (*Aggregator, error) {
	if setup == nil || setup.Ceremony.Params == nil {
		return nil, errors.New("he: incomplete public setup")
	}
	if dim < 1 || dim > MaxDim {
		return nil, fmt.Errorf("he: dimension %d outside [1, %d]", dim, MaxDim)
	}
	p := setup.Params()
	a := &Aggregator{setup: setup, p: p, round: round, dim: dim, seen: make(map[PartyID]bool)}
	a.sum = make([][2]ring.Poly, p.CiphertextsFor(dim))
	rq := p.rlwe.RingQ()
	for k := range a.sum {
		a.sum[k] = [2]ring.Poly{rq.NewPoly(), rq.NewPoly()}
	}
	return a, nil
}

func (a *Aggregator) checkHeader(ceremony CeremonyID, round uint64, from PartyID, dim, nct int) error {
	if a.req != nil {
		return fmt.Errorf("he: upload from %d after decryption started", from)
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
	if a.seen[from] {
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
	if err := a.checkHeader(u.Ceremony, u.Round, u.From, u.Dim, len(u.Ciphertexts)); err != nil {
		return err
	}
	for k := range u.Ciphertexts {
		for h := 0; h < 2; h++ {
			if err := checkPolyValues(a.p, u.Ciphertexts[k][h]); err != nil {
				return fmt.Errorf("he: upload from %d, ciphertext %d: %w", u.From, k, err)
			}
		}
	}
	rq := a.p.rlwe.RingQ()
	for k := range u.Ciphertexts {
		rq.Add(a.sum[k][0], u.Ciphertexts[k][0], a.sum[k][0])
		rq.Add(a.sum[k][1], u.Ciphertexts[k][1], a.sum[k][1])
	}
	a.accept(u.From)
	return nil
}

func (a *Aggregator) accept(from PartyID) {
	a.seen[from] = true
	a.contributors = append(a.contributors, from)
}

// AddEncoded decodes an upload straight into the aggregate without keeping it: the
// whole message is validated before anything is added.
func (a *Aggregator) AddEncoded(b []byte) error {
	d, err := newDecoder(b, typeUpload)
	if err != nil {
		return err
	}
	ceremony, round, from, dim, nct := decodeUploadHeader(d, a.p)
	if err := d.err; err != nil {
		return err
	}
	if err := a.checkHeader(ceremony, round, from, dim, nct); err != nil {
		return err
	}
	if want := d.off + nct*2*a.p.polyBytes(); want != len(b) {
		return malformed("upload from %d is %d bytes, want %d", from, len(b), want)
	}
	body := b[d.off:]
	pb := a.p.polyBytes()
	// Validate while adding, in one pass; on the first bad coefficient, subtract what
	// was already added, so a rejected upload leaves the aggregate unchanged.
	for k := 0; k < 2*nct; k++ {
		raw := body[k*pb : (k+1)*pb]
		dst := a.sum[k/2][k%2]
		if done, err := addPolyChecked(a.p, raw, dst); err != nil {
			subPolyBytes(a.p, raw, dst, done)
			for kk := 0; kk < k; kk++ {
				subPolyBytes(a.p, body[kk*pb:(kk+1)*pb], a.sum[kk/2][kk%2], len(a.p.moduli)*a.p.N())
			}
			return malformed("upload from %d, ciphertext %d: %v", from, k/2, err)
		}
	}
	a.accept(from)
	return nil
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
func (a *Aggregator) Contributors() []PartyID { return slices.Clone(a.contributors) }

// DecryptRequest closes the round to uploads and returns the request for the active
// members: the first Threshold of active (which must all be committee members). Call it
// again with another set if an active member drops before answering.
func (a *Aggregator) DecryptRequest(active []PartyID) (*DecryptRequest, error) {
	c := &a.setup.Ceremony
	if len(a.contributors) < MinContributors {
		return nil, fmt.Errorf("he: %d uploads; refusing to decrypt fewer than %d (it would reveal an individual update)", len(a.contributors), MinContributors)
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
	c1 := make([]ring.Poly, len(a.sum))
	for k := range a.sum {
		c1[k] = a.sum[k][1]
	}
	a.req = &DecryptRequest{Ceremony: c.ID, Round: a.round, Dim: a.dim, Contributors: len(a.contributors), Active: set, C1: c1}
	a.shares = make(map[PartyID]bool, len(set))
	if a.shareSum == nil {
		a.shareSum = newPolys(a.p, len(a.sum))
	} else {
		for k := range a.shareSum {
			a.shareSum[k].Zero()
		}
	}
	return a.req, nil
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
	out := &Aggregate{Round: a.round, Contributors: slices.Clone(a.contributors), Sum: make([]float64, a.dim)}
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

// Decryptor is a committee member's side of a round: it answers decryption requests
// with smudged shares of its threshold key.
type Decryptor struct {
	km       *KeyMaterial
	p        *Params
	combiner multiparty.Combiner
	served   map[uint64]int
}

// NewDecryptor prepares member km.Self to answer decryption requests.
func NewDecryptor(km *KeyMaterial) (*Decryptor, error) {
	if km == nil || km.Setup == nil || km.Setup.Ceremony.Params == nil {
		return nil, errors.New("he: incomplete key material")
	}
	c := &km.Setup.Ceremony
	idx := c.index(km.Self)
	if idx < 0 {
		return nil, fmt.Errorf("he: key material of %d, who is not on the committee", km.Self)
	}
	p := c.Params
	points := make([]multiparty.ShamirPublicPoint, len(c.Committee))
	for j := range c.Committee {
		points[j] = shamirPoint(j)
	}
	return &Decryptor{
		km: km, p: p,
		combiner: multiparty.NewCombiner(p.rlwe, shamirPoint(idx), points, c.Threshold),
		served:   make(map[uint64]int),
	}, nil
}

// Share answers a decryption request. It refuses requests for another ceremony, active
// sets that are not exactly Threshold distinct members including this one, aggregates
// of fewer than MinContributors uploads, and more than MaxSharesPerRound requests per round.
func (d *Decryptor) Share(req *DecryptRequest) (*DecryptShare, error) {
	if req == nil {
		return nil, errors.New("he: nil decryption request")
	}
	for k := range req.C1 {
		if err := checkPolyValues(d.p, req.C1[k]); err != nil {
			return nil, fmt.Errorf("he: request ciphertext %d: %w", k, err)
		}
	}
	additive, sm, err := d.begin(req, len(req.C1))
	if err != nil {
		return nil, err
	}
	out := &DecryptShare{Ceremony: req.Ceremony, Round: req.Round, From: d.km.Self, Shares: make([]ring.Poly, len(req.C1))}
	for k := range req.C1 {
		out.Shares[k] = d.shareOf(req.C1[k], additive, sm)
	}
	return out, nil
}

// ShareEncoded answers an encoded decryption request, reading each c1 into one reused
// buffer instead of decoding the whole request first. The request is validated in full
// before any share is computed.
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
	if want := dec.off + nct*pb; want != len(b) {
		return nil, malformed("decryption request is %d bytes, want %d", len(b), want)
	}
	body := b[dec.off:]
	for k := 0; k < nct; k++ {
		if err := checkPoly(p, body[k*pb:(k+1)*pb]); err != nil {
			return nil, malformed("request ciphertext %d: %v", k, err)
		}
	}
	additive, sm, err := d.begin(req, nct)
	if err != nil {
		return nil, err
	}
	out := &DecryptShare{Ceremony: req.Ceremony, Round: req.Round, From: d.km.Self, Shares: make([]ring.Poly, nct)}
	c1 := p.rlwe.RingQ().NewPoly()
	for k := 0; k < nct; k++ {
		readPoly(p, body[k*pb:(k+1)*pb], &c1)
		out.Shares[k] = d.shareOf(c1, additive, sm)
	}
	return out, nil
}

// begin checks a request (all but its polynomials), counts it against the round's
// budget and returns this member's additive share for the active set and a fresh
// smudging sampler.
func (d *Decryptor) begin(req *DecryptRequest, nct int) (*rlwe.SecretKey, *smudger, error) {
	c := &d.km.Setup.Ceremony
	p := d.p
	if req.Ceremony != c.ID {
		return nil, nil, errors.New("he: decryption request for another ceremony")
	}
	if req.Contributors < MinContributors {
		return nil, nil, fmt.Errorf("he: refusing to decrypt an aggregate of %d uploads", req.Contributors)
	}
	if len(req.Active) != c.Threshold {
		return nil, nil, fmt.Errorf("%w: active set of %d, threshold %d", ErrNotEnoughMembers, len(req.Active), c.Threshold)
	}
	points := make([]multiparty.ShamirPublicPoint, 0, len(req.Active))
	for _, id := range req.Active {
		j := c.index(id)
		if j < 0 {
			return nil, nil, fmt.Errorf("he: active member %d is not on the committee", id)
		}
		pt := shamirPoint(j)
		if slices.Contains(points, pt) {
			return nil, nil, fmt.Errorf("he: active member %d listed twice", id)
		}
		points = append(points, pt)
	}
	if !slices.Contains(req.Active, d.km.Self) {
		return nil, nil, fmt.Errorf("he: member %d is not in the active set", d.km.Self)
	}
	if req.Dim < 1 || req.Dim > MaxDim || nct != p.CiphertextsFor(req.Dim) {
		return nil, nil, fmt.Errorf("he: request has %d ciphertexts for dimension %d", nct, req.Dim)
	}
	if d.served[req.Round] >= MaxSharesPerRound {
		return nil, nil, fmt.Errorf("he: already gave %d decryption shares for round %d", MaxSharesPerRound, req.Round)
	}
	additive := rlwe.NewSecretKey(p.rlwe)
	if err := d.combiner.GenAdditiveShare(points, shamirPoint(c.index(d.km.Self)), d.km.share, additive); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrNotEnoughMembers, err)
	}
	sm, err := newSmudger(p)
	if err != nil {
		return nil, nil, err
	}
	d.served[req.Round]++
	return additive, sm, nil
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
