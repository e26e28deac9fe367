package secagg

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/cloudflare/circl/dh/x25519"
)

// Stage is the stage a Server is collecting messages for.
type Stage uint8

const (
	StageAdvertise   Stage = iota + 1 // collecting AdvertiseKeys
	StageShare                        // collecting ShareKeys
	StageMasked                       // collecting MaskedInput
	StageConsistency                  // collecting ConsistencySig (malicious variant only)
	StageUnmask                       // collecting UnmaskShares
	StageDone                         // result available
	StageAbandoned                    // too few survivors; nothing released
)

var stageNames = [...]string{"", "advertise", "share", "masked", "consistency", "unmask", "done", "abandoned"}

func (s Stage) String() string {
	if int(s) < len(stageNames) && s != 0 {
		return stageNames[s]
	}
	return fmt.Sprintf("Stage(%d)", uint8(s))
}

var expectedByServer = map[Stage]MsgType{
	StageAdvertise: MsgAdvertiseKeys, StageShare: MsgShareKeys, StageMasked: MsgMaskedInput,
	StageConsistency: MsgConsistencySig, StageUnmask: MsgUnmaskShares,
}

// Outgoing is a message for the engine to deliver to one client.
type Outgoing struct {
	To   ClientID
	Data []byte
}

// Result is what the server learns: the sum over the survivors U3 (the clients whose masked
// input it received).
type Result struct {
	Sum       []float64  // Σ of the survivors' quantised updates, Dim entries
	Weight    float64    // Σ of their quantised weights
	Survivors []ClientID // U3, sorted
	Ring      []uint32   // the unmasked sum in Z_{2^k}: Dim entries then the weight
}

// subjectShares collects the first Threshold shares revealed about one client.
type subjectShares struct {
	kind    byte
	holders []uint32
	chunks  [][chunksPerSecret]uint64
}

// Server is the server side of one round, as a pure state machine. Feed it client messages with
// Receive; call Advance when the engine closes the stage (everyone answered, see Ready, or a
// timeout); Advance returns the messages to deliver. Clients that did not answer a stage are
// out of the round from then on; MarkDropped tells the server early.
type Server struct {
	cfg        *Config
	g          *graph
	neighbours [][]uint32
	stage      Stage
	dropped    []bool
	got        []bool // answered the current stage
	eligible   []bool // may answer the current stage
	keys       []keyEntry
	commits    [][keySize]byte // seed commitments from AdvertiseKeys
	inU1, inU2 []bool
	inU3       []bool
	shareMsgs  [][]cipherEntry // ShareKeys entries by sender (sorted by recipient)
	acc        []uint32
	u3         []uint32
	sigs       []sigEntry
	responders []uint32 // U5 in arrival order
	subjects   []subjectShares
	result     *Result
	failure    error
	prgBytes   int64
}

// NewServer creates the server state machine for the round described by cfg.
func NewServer(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := cfg.Clients
	s := &Server{cfg: &cfg, g: newGraph(&cfg), stage: StageAdvertise,
		dropped: make([]bool, n), got: make([]bool, n), eligible: make([]bool, n),
		keys: make([]keyEntry, n), commits: make([][keySize]byte, n)}
	s.neighbours = make([][]uint32, n)
	for u := range uint32(n) {
		s.neighbours[u] = s.g.neighbours(u)
	}
	for i := range s.eligible {
		s.eligible[i] = true
	}
	return s, nil
}

// Stage returns the stage the server is collecting.
func (s *Server) Stage() Stage { return s.stage }

// PRGBytes returns the bytes of mask the server expanded while unmasking.
func (s *Server) PRGBytes() int64 { return s.prgBytes }

// MarkDropped records that the engine gave up on a client. A message it already delivered for
// the current stage still counts (a masked input received stays in the sum).
func (s *Server) MarkDropped(id ClientID) {
	if int(id) < len(s.dropped) {
		s.dropped[id] = true
	}
}

// Ready reports whether every eligible, not-dropped client has answered the current stage.
func (s *Server) Ready() bool {
	if s.stage >= StageDone {
		return false
	}
	for u := range s.got {
		if s.eligible[u] && !s.dropped[u] && !s.got[u] {
			return false
		}
	}
	return true
}

// Waiting returns the eligible, not-dropped clients that have not answered the current stage.
func (s *Server) Waiting() []ClientID {
	var out []ClientID
	for u := range s.got {
		if s.stage < StageDone && s.eligible[u] && !s.dropped[u] && !s.got[u] {
			out = append(out, uint32(u))
		}
	}
	return out
}

// Receive processes one message that the transport received from client `from`. An error
// leaves the state unchanged: the engine may ignore the message or drop the client.
func (s *Server) Receive(from ClientID, data []byte) error {
	if s.stage >= StageDone {
		return fmt.Errorf("secagg server: %w: round is %v", ErrOutOfStage, s.stage)
	}
	m, err := decode(data)
	if err != nil {
		return fmt.Errorf("secagg server: from client %d: %w", from, err)
	}
	switch {
	case m.Round != s.cfg.Round:
		return fmt.Errorf("secagg server: %w: %v of round %d from client %d, this is round %d", ErrWrongRound, m.Type, m.Round, from, s.cfg.Round)
	case int(from) >= s.cfg.Clients || m.Sender != from || m.Recipient != ServerID:
		return fmt.Errorf("secagg server: %w: %v sent by %d claims sender %d", ErrWrongParty, m.Type, from, m.Sender)
	case m.Type != expectedByServer[s.stage]:
		return fmt.Errorf("secagg server: %w: %v from client %d during stage %v", ErrOutOfStage, m.Type, from, s.stage)
	case !s.eligible[from]:
		return fmt.Errorf("secagg server: %w: client %d is no longer in the round (stage %v)", ErrWrongParty, from, s.stage)
	case s.got[from]:
		return fmt.Errorf("secagg server: %w: %v from client %d", ErrDuplicate, m.Type, from)
	case s.dropped[from]:
		return fmt.Errorf("secagg server: %w: client %d was marked dropped", ErrWrongParty, from)
	}
	switch m.Type {
	case MsgAdvertiseKeys:
		err = s.receiveKeys(from, m)
	case MsgShareKeys:
		err = s.receiveShareKeys(from, m)
	case MsgMaskedInput:
		err = s.receiveMasked(m)
	case MsgConsistencySig:
		err = s.receiveSig(from, m)
	case MsgUnmaskShares:
		err = s.receiveUnmask(from, m)
	}
	if err != nil {
		return fmt.Errorf("secagg server: %w: %v from client %d: %w", ErrInvalid, m.Type, from, err)
	}
	s.got[from] = true
	return nil
}

func (s *Server) receiveKeys(from uint32, m *message) error {
	if m.channel == m.msk {
		return fmt.Errorf("channel and masking keys are equal")
	}
	if s.cfg.Malicious() {
		if m.sig == nil || !ed25519.Verify(s.cfg.VerifyKeys[from], advertiseTranscript(s.cfg.session(), from, &m.channel, &m.msk), m.sig) {
			return fmt.Errorf("missing or invalid signature")
		}
	} else if m.sig != nil {
		return fmt.Errorf("signature in the semi-honest variant")
	}
	s.keys[from] = keyEntry{id: from, channel: m.channel, msk: m.msk, sig: m.sig}
	s.commits[from] = m.commit
	return nil
}

func (s *Server) receiveShareKeys(from uint32, m *message) error {
	// The client must encrypt one share to exactly each neighbour in U1.
	want := 0
	for _, v := range s.neighbours[from] {
		if s.inU1[v] {
			want++
		}
	}
	if len(m.cts) != want {
		return fmt.Errorf("%d encrypted shares, want one per each of %d neighbours in U1", len(m.cts), want)
	}
	for _, e := range m.cts {
		if int(e.id) >= s.cfg.Clients || !s.inU1[e.id] || !s.g.isNeighbour(from, e.id) {
			return fmt.Errorf("share for client %d, not a neighbour in U1", e.id)
		}
	}
	s.shareMsgs[from] = m.cts
	return nil
}

func (s *Server) receiveMasked(m *message) error {
	if int(m.ringBits) != s.cfg.RingBits() || int(m.entries) != s.cfg.Dim+1 {
		return fmt.Errorf("masked input of %d entries × %d bits, want %d × %d", m.entries, m.ringBits, s.cfg.Dim+1, s.cfg.RingBits())
	}
	addPacked(s.acc, m.packed, int(m.ringBits))
	return nil
}

func (s *Server) receiveSig(from uint32, m *message) error {
	if !ed25519.Verify(s.cfg.VerifyKeys[from], consistencyTranscript(s.cfg.session(), s.u3), m.sig) {
		return fmt.Errorf("invalid signature of the survivor set")
	}
	s.sigs = append(s.sigs, sigEntry{id: from, sig: m.sig})
	return nil
}

func (s *Server) receiveUnmask(from uint32, m *message) error {
	// Exactly one share per neighbour whose shares were delivered to `from`, of the right kind:
	// b_u for survivors, the masking key for clients that dropped after sharing.
	i := 0
	for _, u := range s.neighbours[from] {
		if !s.inU2[u] {
			continue // its shares were never delivered to `from`
		}
		if i >= len(m.shares) || m.shares[i].about != u {
			return fmt.Errorf("shares do not cover exactly the %d neighbours that shared with client %d", i+1, from)
		}
		want := shareMaskKey
		if s.inU3[u] {
			want = shareSelfMask
		}
		if m.shares[i].kind != want {
			return fmt.Errorf("share of kind %d about client %d, want kind %d", m.shares[i].kind, u, want)
		}
		i++
	}
	if i != len(m.shares) {
		return fmt.Errorf("%d shares, want %d", len(m.shares), i)
	}
	t := s.cfg.Threshold
	for _, e := range m.shares {
		sub := &s.subjects[e.about]
		if len(sub.holders) < t {
			sub.kind = e.kind
			sub.holders = append(sub.holders, from)
			sub.chunks = append(sub.chunks, e.chunks)
		}
	}
	s.responders = append(s.responders, from)
	return nil
}

// abandon ends the round without a result.
func (s *Server) abandon(format string, a ...any) error {
	s.stage = StageAbandoned
	s.acc = nil
	s.subjects = nil
	s.failure = fmt.Errorf("secagg server: %w: %s", ErrAbandoned, fmt.Sprintf(format, a...))
	return s.failure
}

// nextStage makes the clients that answered the only eligible ones for the next stage.
func (s *Server) nextStage(next Stage) []uint32 {
	var answered []uint32
	for u := range s.got {
		s.eligible[u] = s.got[u]
		if s.got[u] {
			answered = append(answered, uint32(u))
		}
		s.got[u] = false
	}
	s.stage = next
	return answered
}

func (s *Server) header(t MsgType, to uint32) Header {
	return Header{Type: t, Round: s.cfg.Round, Sender: ServerID, Recipient: to}
}

// Advance closes the current stage and returns the messages for the next one. Clients that did
// not answer are out of the round. If too few clients remain, the round is abandoned: Advance
// returns an error wrapping ErrAbandoned and no result is ever released.
func (s *Server) Advance() ([]Outgoing, error) {
	t := s.cfg.Threshold
	switch s.stage {
	case StageAdvertise:
		u1 := s.nextStage(StageShare)
		if len(u1) < t+1 {
			return nil, s.abandon("%d clients advertised keys, need at least %d", len(u1), t+1)
		}
		s.inU1 = slices.Clone(s.eligible)
		s.shareMsgs = make([][]cipherEntry, s.cfg.Clients)
		return s.keyLists(u1), nil
	case StageShare:
		u2 := s.nextStage(StageMasked)
		if len(u2) < t+1 {
			return nil, s.abandon("%d clients shared their keys, need at least %d", len(u2), t+1)
		}
		s.inU2 = slices.Clone(s.eligible)
		s.acc = make([]uint32, s.cfg.Dim+1)
		out := s.routeShares(u2)
		s.shareMsgs = nil
		return out, nil
	case StageMasked:
		next := StageUnmask
		if s.cfg.Malicious() {
			next = StageConsistency
		}
		s.u3 = s.nextStage(next)
		if len(s.u3) < t {
			return nil, s.abandon("%d clients sent masked inputs, need at least %d", len(s.u3), t)
		}
		s.inU3 = slices.Clone(s.eligible)
		s.subjects = make([]subjectShares, s.cfg.Clients)
		typ := MsgUnmaskRequest
		if s.cfg.Malicious() {
			typ = MsgConsistencyRequest
		}
		data := (&message{Header: s.header(typ, BroadcastID), ids: s.u3}).encode()
		out := make([]Outgoing, 0, len(s.u3))
		for _, u := range s.u3 {
			out = append(out, Outgoing{To: u, Data: data})
		}
		return out, nil
	case StageConsistency:
		u4 := s.nextStage(StageUnmask)
		if len(u4) < t {
			return nil, s.abandon("%d clients signed the survivor set, need at least %d", len(u4), t)
		}
		slices.SortFunc(s.sigs, func(a, b sigEntry) int { return int(a.id) - int(b.id) })
		data := (&message{Header: s.header(MsgUnmaskRequest, BroadcastID), ids: s.u3, hasSigs: true, sigs: s.sigs}).encode()
		out := make([]Outgoing, 0, len(u4))
		for _, u := range u4 {
			out = append(out, Outgoing{To: u, Data: data})
		}
		return out, nil
	case StageUnmask:
		s.nextStage(StageDone)
		if err := s.unmask(); err != nil {
			return nil, err
		}
		return nil, nil
	}
	if s.failure != nil {
		return nil, s.failure
	}
	return nil, fmt.Errorf("secagg server: %w: round is %v", ErrOutOfStage, s.stage)
}

// Result returns the decoded sum once the round is done.
func (s *Server) Result() (*Result, error) {
	if s.failure != nil {
		return nil, s.failure
	}
	if s.result == nil {
		return nil, fmt.Errorf("secagg server: no result yet, stage %v", s.stage)
	}
	return s.result, nil
}

// unmask reconstructs the secrets of U2 and removes all masks.
func (s *Server) unmask() error {
	t := s.cfg.Threshold
	// Check every needed secret has t shares before any work, so an abandoned round costs nothing.
	for u := range uint32(s.cfg.Clients) {
		if !s.inU2[u] {
			continue
		}
		if got := len(s.subjects[u].holders); got < t {
			what := "self-mask seed of survivor"
			if !s.inU3[u] {
				what = "masking key of dropped client"
			}
			return s.abandon("%s %d: %d of %d shares needed", what, u, got, t)
		}
	}
	var bary *barycentric
	if s.g.complete && len(s.responders) >= t+1 {
		xs := make([]uint64, t+1)
		for i, r := range s.responders[:t+1] {
			xs[i] = uint64(r) + 1
		}
		var err error
		if bary, err = newBarycentric(xs); err != nil {
			return s.abandon("%v", err)
		}
	}
	pos := make(map[uint32]int, t+1)
	for i, r := range s.responders[:min(len(s.responders), t+1)] {
		pos[r] = i
	}
	lambda := make([]uint64, t+1)
	xs := make([]uint64, t)
	var chunks [chunksPerSecret]uint64
	var e maskExpander
	for u := range uint32(s.cfg.Clients) {
		if !s.inU2[u] {
			continue
		}
		sub := &s.subjects[u]
		coeffs := lambda[:t]
		if bary != nil {
			// Holders are the first t+1 responders minus u (or minus the last if u is not one).
			skip, in := pos[u]
			if !in {
				skip = t
			}
			bary.lagrangeWithout(skip, lambda)
			coeffs = append(lambda[:skip:skip], lambda[skip+1:]...)
		} else {
			for i, h := range sub.holders {
				xs[i] = uint64(h) + 1
			}
			if err := lagrangeAtZero(xs, coeffs); err != nil {
				return s.abandon("reconstructing client %d: %v", u, err)
			}
		}
		for j := range chunks {
			var v uint64
			for i := range t {
				v = fieldAdd(v, fieldMul(coeffs[i], sub.chunks[i][j]))
			}
			chunks[j] = v
		}
		var secret [secretSize]byte
		if err := chunksToSecret(chunks[:], &secret); err != nil {
			return s.abandon("client %d: %v", u, err)
		}
		if s.inU3[u] {
			if seedCommitment(s.cfg.session(), u, &secret) != s.commits[u] {
				return s.abandon("self-mask seed of client %d reconstructed from its neighbours' shares does not match its commitment (bad shares)", u)
			}
			key, err := selfMaskKey(&secret, s.cfg.session(), u)
			if err != nil {
				return s.abandon("%v", err)
			}
			if err := e.apply(s.acc, &key, -1); err != nil {
				return s.abandon("%v", err)
			}
			continue
		}
		// Dropped after sharing: recompute its pairwise masks with the survivors among its
		// neighbours and cancel them. The reconstructed key must match the advertised one.
		sk := x25519.Key(secret)
		var pk x25519.Key
		x25519.KeyGen(&pk, &sk)
		if pk != s.keys[u].msk {
			return s.abandon("reconstructed masking key of client %d does not match its public key (bad shares)", u)
		}
		for _, v := range s.neighbours[u] {
			if !s.inU3[v] {
				continue
			}
			key, err := agree(&sk, (*x25519.Key)(&s.keys[v].msk), purposeMask, s.cfg.session(), u, v)
			if err != nil {
				return s.abandon("%v", err)
			}
			// v added PRG(s_uv) if v < u and subtracted it if v > u; undo that.
			sign := -1
			if v > u {
				sign = +1
			}
			if err := e.apply(s.acc, &key, sign); err != nil {
				return s.abandon("%v", err)
			}
		}
	}
	s.prgBytes = e.written
	ringMask := uint32(uint64(1)<<s.cfg.RingBits() - 1)
	var largest uint32
	for i := range s.acc {
		v := s.acc[i] & ringMask
		s.acc[i] = v
		largest = max(largest, v)
	}
	// The masks cancel whatever the clients sent, so a client that adds a constant to its masked
	// input shifts the sum by it and can wrap it around the ring: refuse a sum no honest inputs
	// can add up to.
	if uint64(largest) > uint64(len(s.u3))*uint64(s.cfg.quantLevels()) {
		if err := FeasibleSum(s.cfg, s.acc, len(s.u3)); err != nil {
			return s.abandon("round %d: %v: a client sent an out-of-range masked input", s.cfg.Round, err)
		}
	}
	sum, weight, err := DecodeSum(s.cfg, s.acc, len(s.u3))
	if err != nil {
		return s.abandon("%v", err)
	}
	s.result = &Result{Sum: sum, Weight: weight, Survivors: s.u3, Ring: s.acc}
	s.stage = StageDone
	s.subjects = nil
	return nil
}

// keyEntrySize is the encoded size of one KeyList entry.
func (s *Server) keyEntrySize() int {
	if s.cfg.Malicious() {
		return 4 + 2*keySize + signatureSize
	}
	return 4 + 2*keySize
}

func (s *Server) appendKeyEntry(b []byte, v uint32) []byte {
	k := &s.keys[v]
	b = binary.BigEndian.AppendUint32(b, v)
	b = append(b, k.channel[:]...)
	b = append(b, k.msk[:]...)
	if s.cfg.Malicious() {
		b = append(b, k.sig...)
	}
	return b
}

// keyLists encodes each client's KeyList straight into one exactly sized buffer. On the complete
// graph every list is U1, so one broadcast message is encoded and shared.
func (s *Server) keyLists(u1 []uint32) []Outgoing {
	es := s.keyEntrySize()
	out := make([]Outgoing, 0, len(u1))
	if s.g.complete {
		// Everyone's list is U1 (each client skips its own entry): encode one broadcast.
		b := make([]byte, 0, headerSize+5+es*len(u1))
		b = appendHeader(b, s.header(MsgKeyList, BroadcastID))
		b = binary.BigEndian.AppendUint32(b, uint32(len(u1)))
		b = appendFlag(b, s.cfg.Malicious())
		for _, v := range u1 {
			b = s.appendKeyEntry(b, v)
		}
		for _, u := range u1 {
			out = append(out, Outgoing{To: u, Data: b})
		}
		return out
	}
	for _, u := range u1 {
		count := 0
		for _, v := range s.neighbours[u] {
			if s.inU1[v] {
				count++
			}
		}
		b := make([]byte, 0, headerSize+5+es*count)
		b = appendHeader(b, s.header(MsgKeyList, u))
		b = binary.BigEndian.AppendUint32(b, uint32(count))
		b = appendFlag(b, s.cfg.Malicious())
		for _, v := range s.neighbours[u] {
			if s.inU1[v] {
				b = s.appendKeyEntry(b, v)
			}
		}
		out = append(out, Outgoing{To: u, Data: b})
	}
	return out
}

// routeShares builds each client's Shares message: the ciphertexts addressed to it by the
// clients of U2, in increasing sender order (senders are visited in order, so no sorting).
func (s *Server) routeShares(u2 []uint32) []Outgoing {
	n := s.cfg.Clients
	bufs := make([][]byte, n)
	for _, v := range u2 {
		count := 0
		for _, u := range s.neighbours[v] {
			if s.inU2[u] {
				count++
			}
		}
		b := make([]byte, 0, headerSize+4+count*(4+shareCipherSize))
		b = appendHeader(b, s.header(MsgShares, v))
		bufs[v] = binary.BigEndian.AppendUint32(b, uint32(count))
	}
	for _, u := range u2 {
		for _, e := range s.shareMsgs[u] {
			if s.inU2[e.id] {
				bufs[e.id] = binary.BigEndian.AppendUint32(bufs[e.id], u)
				bufs[e.id] = append(bufs[e.id], e.ct...)
			}
		}
	}
	out := make([]Outgoing, 0, len(u2))
	for _, v := range u2 {
		out = append(out, Outgoing{To: v, Data: bufs[v]})
	}
	return out
}
