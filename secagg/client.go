package secagg

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/cloudflare/circl/dh/x25519"
)

// Errors a Client or Server returns; match them with errors.Is.
var (
	// ErrWrongRound: the message belongs to another round (stale or replayed).
	ErrWrongRound = errors.New("message for another round")
	// ErrOutOfStage: the message type is not the one expected at this stage (replayed, duplicated
	// or early); the state is unchanged.
	ErrOutOfStage = errors.New("message out of stage")
	// ErrDuplicate: the server already has this client's message for this stage.
	ErrDuplicate = errors.New("duplicate message")
	// ErrWrongParty: the message names another sender or recipient, or an unknown client.
	ErrWrongParty = errors.New("message from or to the wrong party")
	// ErrAborted: the client detected a protocol violation or too few peers and left the round;
	// it releases nothing more.
	ErrAborted = errors.New("client aborted the round")
	// ErrAbandoned: too few clients survived a stage; the server releases no result.
	ErrAbandoned = errors.New("round abandoned")
	// ErrInvalid: a well-formed message whose content breaks the protocol.
	ErrInvalid = errors.New("invalid protocol message")
)

type clientStage uint8

const (
	cStart clientStage = iota
	cAwaitKeys
	cAwaitShares
	cAwaitConsistency
	cAwaitUnmask
	cDone
	cAborted
)

var clientStageNames = [...]string{"start", "awaiting keys", "awaiting shares", "awaiting consistency check",
	"awaiting unmask request", "done", "aborted"}

// peer is what a client knows about one neighbour.
type peer struct {
	id         uint32
	advertised bool // in U1: its keys were in the key list
	inU2       bool // sent me its shares
	channelPub x25519.Key
	maskPub    x25519.Key
	channelKey [16]byte
	bShare     [chunksPerSecret]uint64
	sShare     [chunksPerSecret]uint64
}

// Client is one client's side of a secure-aggregation round, as a pure state machine.
//
// Call Start for the AdvertiseKeys message, SetInput (any time before the shares arrive), then
// Handle for every message from the server; Handle returns the reply to send (nil when there is
// none). After Handle returns an error wrapping ErrAborted the client has left the round.
type Client struct {
	cfg        *Config
	id         uint32
	rs         *byteStream
	signKey    ed25519.PrivateKey
	stage      clientStage
	peers      []peer // one per neighbour, sorted by id
	channel    keyPair
	mask       keyPair
	seed       [secretSize]byte // b_u
	input      []uint32
	survivors  []uint32 // U3 as signed in the consistency check
	prgBytes   int64
	uploadSize int64
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithSigningKey gives the client its Ed25519 key from the PKI; required when the config has
// VerifyKeys (malicious-server variant).
func WithSigningKey(k ed25519.PrivateKey) ClientOption { return func(c *Client) { c.signKey = k } }

// NewClient creates the state machine of client id for the round described by cfg. rng supplies
// all the client's randomness (keys, self-mask seed, Shamir polynomials, stochastic rounding):
// crypto/rand.Reader in real runs, a seeded reader only in tests or --seed simulations.
func NewClient(cfg Config, id ClientID, rng io.Reader, opts ...ClientOption) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if int(id) >= cfg.Clients {
		return nil, fmt.Errorf("secagg client: id %d not in cohort of %d", id, cfg.Clients)
	}
	if rng == nil {
		return nil, errors.New("secagg client: nil randomness source")
	}
	rs, err := newByteStream(rng)
	if err != nil {
		return nil, fmt.Errorf("secagg client %d: %w", id, err)
	}
	c := &Client{cfg: &cfg, id: id, rs: rs}
	for _, o := range opts {
		o(c)
	}
	if cfg.Malicious() {
		if len(c.signKey) != ed25519.PrivateKeySize {
			return nil, fmt.Errorf("secagg client %d: malicious-server variant needs a signing key", id)
		}
		if !c.signKey.Public().(ed25519.PublicKey).Equal(cfg.VerifyKeys[id]) {
			return nil, fmt.Errorf("secagg client %d: signing key does not match the PKI", id)
		}
	}
	nb := newGraph(&cfg).neighbours(id)
	c.peers = make([]peer, len(nb))
	for i, v := range nb {
		c.peers[i].id = v
	}
	return c, nil
}

// ID returns the client's id in the cohort.
func (c *Client) ID() ClientID { return c.id }

// UploadBytes returns the total size of the messages the client has produced so far.
func (c *Client) UploadBytes() int64 { return c.uploadSize }

// PRGBytes returns how many bytes of mask the client has expanded so far.
func (c *Client) PRGBytes() int64 { return c.prgBytes }

func (c *Client) peerIndex(v uint32) int {
	i, ok := slices.BinarySearchFunc(c.peers, v, func(p peer, id uint32) int { return int(p.id) - int(id) })
	if !ok {
		return -1
	}
	return i
}

func (c *Client) abort(format string, a ...any) error {
	c.stage = cAborted
	c.input = nil
	clear(c.seed[:])
	clear(c.mask.secret[:])
	for i := range c.peers {
		c.peers[i].bShare, c.peers[i].sShare = [chunksPerSecret]uint64{}, [chunksPerSecret]uint64{}
	}
	return fmt.Errorf("secagg client %d: %w: %s", c.id, ErrAborted, fmt.Sprintf(format, a...))
}

func (c *Client) out(m *message) []byte {
	m.Round = c.cfg.Round
	m.Sender = c.id
	m.Recipient = ServerID
	b := m.encode()
	c.uploadSize += int64(len(b))
	return b
}

// SetInput quantises the client's update (Dim entries) and weight; see Config for the ranges.
func (c *Client) SetInput(update []float32, weight float64) error {
	if c.stage > cAwaitShares {
		return fmt.Errorf("secagg client %d: input set after the masked input was sent", c.id)
	}
	in := make([]uint32, c.cfg.Dim+1)
	if err := c.cfg.encodeInput(update, weight, c.rs, in); err != nil {
		return fmt.Errorf("secagg client %d: %w", c.id, err)
	}
	c.input = in
	return nil
}

// SetEncodedInput sets an input already encoded with EncodeInput (Dim+1 values of Bits bits).
func (c *Client) SetEncodedInput(encoded []uint32) error {
	if c.stage > cAwaitShares {
		return fmt.Errorf("secagg client %d: input set after the masked input was sent", c.id)
	}
	if len(encoded) != c.cfg.Dim+1 {
		return fmt.Errorf("secagg client %d: encoded input has %d entries, need %d", c.id, len(encoded), c.cfg.Dim+1)
	}
	limit := uint32(uint64(1)<<c.cfg.Bits - 1)
	for i, v := range encoded {
		if v > limit {
			return fmt.Errorf("secagg client %d: encoded entry %d = %d exceeds %d bits", c.id, i, v, c.cfg.Bits)
		}
	}
	c.input = slices.Clone(encoded)
	return nil
}

// advertiseTranscript is what a client signs in AdvertiseKeys: its keys for this run and round.
func advertiseTranscript(s session, id uint32, channel, msk *[keySize]byte) []byte {
	b := make([]byte, 0, 128)
	b = append(b, "shoal/secagg/v2 advertise"...)
	b = appendSession(b, s)
	b = binary.BigEndian.AppendUint32(b, id)
	b = append(b, channel[:]...)
	return append(b, msk[:]...)
}

// seedCommitment binds a client to its self-mask seed b_u, so that the server detects a seed
// reconstructed from bad shares instead of silently producing a wrong sum. b_u is 256 uniformly
// random bits, so its hash reveals nothing.
func seedCommitment(s session, id uint32, seed *[secretSize]byte) [keySize]byte {
	b := make([]byte, 0, 96)
	b = append(b, "shoal/secagg/v2 seed"...)
	b = appendSession(b, s)
	b = binary.BigEndian.AppendUint32(b, id)
	return sha256.Sum256(append(b, seed[:]...))
}

// consistencyTranscript is what a survivor signs in ConsistencyCheck: the survivor set U3 of
// this run and round.
func consistencyTranscript(s session, survivors []uint32) []byte {
	b := make([]byte, 0, 64+4*len(survivors))
	b = append(b, "shoal/secagg/v2 consistency"...)
	b = appendSession(b, s)
	return putUint32s(b, survivors)
}

// Start begins the round (AdvertiseKeys): it generates the channel and masking key pairs and
// the self-mask seed, and returns the message to send to the server.
func (c *Client) Start() ([]byte, error) {
	if c.stage != cStart {
		return nil, fmt.Errorf("secagg client %d: %w: already started", c.id, ErrOutOfStage)
	}
	c.channel = newKeyPair(c.rs)
	c.mask = newKeyPair(c.rs)
	_, _ = c.rs.Read(c.seed[:])
	m := &message{Header: Header{Type: MsgAdvertiseKeys}, channel: c.channel.public, msk: c.mask.public,
		commit: seedCommitment(c.cfg.session(), c.id, &c.seed)}
	if c.cfg.Malicious() {
		m.sig = ed25519.Sign(c.signKey, advertiseTranscript(c.cfg.session(), c.id, &m.channel, &m.msk))
	}
	c.stage = cAwaitKeys
	return c.out(m), nil
}

var expectedByClient = map[clientStage]MsgType{
	cAwaitKeys: MsgKeyList, cAwaitShares: MsgShares, cAwaitConsistency: MsgConsistencyRequest, cAwaitUnmask: MsgUnmaskRequest,
}

// Handle processes one message from the server and returns the reply (nil if none).
// Malformed, stale, misaddressed or out-of-stage messages are rejected and change nothing; a
// valid message that violates the protocol makes the client abort (ErrAborted).
func (c *Client) Handle(data []byte) ([]byte, error) {
	m, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("secagg client %d: %w", c.id, err)
	}
	if m.Round != c.cfg.Round {
		return nil, fmt.Errorf("secagg client %d: %w: %v of round %d, this is round %d", c.id, ErrWrongRound, m.Type, m.Round, c.cfg.Round)
	}
	if m.Recipient != c.id && m.Recipient != BroadcastID {
		return nil, fmt.Errorf("secagg client %d: %w: %v addressed to client %d", c.id, ErrWrongParty, m.Type, m.Recipient)
	}
	if c.stage == cAborted {
		return nil, fmt.Errorf("secagg client %d: %w: ignoring %v", c.id, ErrAborted, m.Type)
	}
	want, ok := expectedByClient[c.stage]
	if !ok || m.Type != want {
		return nil, fmt.Errorf("secagg client %d: %w: got %v while %s", c.id, ErrOutOfStage, m.Type, clientStageNames[c.stage])
	}
	switch m.Type {
	case MsgKeyList:
		return c.handleKeys(m)
	case MsgShares:
		return c.handleShares(m)
	case MsgConsistencyRequest:
		return c.handleConsistency(m)
	default:
		return c.handleUnmask(m)
	}
}

func (c *Client) handleKeys(m *message) ([]byte, error) {
	if m.hasSigs != c.cfg.Malicious() {
		return nil, c.abort("key list signatures present=%v, want %v", m.hasSigs, c.cfg.Malicious())
	}
	peersListed := len(m.keys)
	for _, k := range m.keys {
		if k.id == c.id { // a broadcast list includes the recipient: it must carry our own keys
			if k.channel != c.channel.public || k.msk != c.mask.public {
				return nil, c.abort("key list substitutes this client's own public keys")
			}
			peersListed--
		}
	}
	if peersListed < c.cfg.Threshold {
		return nil, c.abort("only %d neighbours advertised keys, threshold is %d", peersListed, c.cfg.Threshold)
	}
	seen := make(map[x25519.Key]struct{}, 2*len(m.keys)+2)
	seen[c.channel.public] = struct{}{}
	seen[c.mask.public] = struct{}{}
	for _, k := range m.keys {
		if k.id == c.id {
			continue
		}
		i := c.peerIndex(k.id)
		if i < 0 {
			return nil, c.abort("key list names client %d: %v", k.id, errNotNeighbour)
		}
		if c.cfg.Malicious() && !ed25519.Verify(c.cfg.VerifyKeys[k.id], advertiseTranscript(c.cfg.session(), k.id, &k.channel, &k.msk), k.sig) {
			return nil, c.abort("bad signature on the keys of client %d", k.id)
		}
		for _, pk := range [2]x25519.Key{k.channel, k.msk} {
			if _, dup := seen[pk]; dup {
				return nil, c.abort("public key of client %d repeats another key", k.id)
			}
			seen[pk] = struct{}{}
		}
		p := &c.peers[i]
		p.advertised, p.channelPub, p.maskPub = true, k.channel, k.msk
	}
	// Share b_u and the masking secret key among the neighbours that advertised keys.
	var secrets [2 * chunksPerSecret]uint64
	secretToChunks(&c.seed, secrets[:chunksPerSecret])
	secretToChunks((*[secretSize]byte)(&c.mask.secret), secrets[chunksPerSecret:])
	dealer, err := newShamirDealer(secrets[:], c.cfg.Threshold, c.rs)
	if err != nil {
		return nil, c.abort("%v", err)
	}
	out := &message{Header: Header{Type: MsgShareKeys}, cts: make([]cipherEntry, 0, len(m.keys))}
	ctBuf := make([]byte, 0, len(m.keys)*shareCipherSize)
	var shares [2 * chunksPerSecret]uint64
	for i := range c.peers {
		p := &c.peers[i]
		if !p.advertised {
			continue
		}
		key, err := agree(&c.channel.secret, &p.channelPub, purposeChannel, c.cfg.session(), c.id, p.id)
		if err != nil {
			return nil, c.abort("%v", err)
		}
		p.channelKey = key
		dealer.shareAt(uint64(p.id)+1, shares[:])
		start := len(ctBuf)
		ctBuf, err = sealShare(&key, c.cfg.session(), c.id, p.id, shares[:chunksPerSecret], shares[chunksPerSecret:], ctBuf)
		if err != nil {
			return nil, c.abort("%v", err)
		}
		out.cts = append(out.cts, cipherEntry{id: p.id, ct: ctBuf[start:len(ctBuf):len(ctBuf)]})
	}
	clear(dealer.coeffs)
	c.stage = cAwaitShares
	return c.out(out), nil
}

func (c *Client) handleShares(m *message) ([]byte, error) {
	if c.input == nil {
		// Not an abort: the engine can still set the input and deliver the shares again.
		return nil, fmt.Errorf("secagg client %d: shares arrived before the input was set", c.id)
	}
	if len(m.cts) < c.cfg.Threshold {
		return nil, c.abort("only %d neighbours sent shares, threshold is %d", len(m.cts), c.cfg.Threshold)
	}
	for _, e := range m.cts {
		i := c.peerIndex(e.id)
		if i < 0 || !c.peers[i].advertised {
			return nil, c.abort("shares from client %d, which is not a neighbour that advertised keys", e.id)
		}
		p := &c.peers[i]
		if err := openShare(&p.channelKey, c.cfg.session(), p.id, c.id, e.ct, p.bShare[:], p.sShare[:]); err != nil {
			return nil, c.abort("share from client %d: %v", p.id, err)
		}
		p.inU2 = true
	}
	// y = x + PRG(b_u) + Σ_{v>u} PRG(s_uv) - Σ_{v<u} PRG(s_uv), in Z_2^32 and reduced to Z_2^k.
	acc := c.input
	var e maskExpander
	selfKey, err := selfMaskKey(&c.seed, c.cfg.session(), c.id)
	if err != nil {
		return nil, c.abort("%v", err)
	}
	if err := e.apply(acc, &selfKey, +1); err != nil {
		return nil, c.abort("%v", err)
	}
	for i := range c.peers {
		p := &c.peers[i]
		if !p.inU2 {
			continue
		}
		key, err := agree(&c.mask.secret, &p.maskPub, purposeMask, c.cfg.session(), c.id, p.id)
		if err != nil {
			return nil, c.abort("%v", err)
		}
		sign := +1
		if p.id < c.id {
			sign = -1
		}
		if err := e.apply(acc, &key, sign); err != nil {
			return nil, c.abort("%v", err)
		}
	}
	c.prgBytes += e.written
	k := c.cfg.RingBits()
	out := &message{Header: Header{Type: MsgMaskedInput}, ringBits: uint8(k), entries: uint32(len(acc))}
	out.packed = make([]byte, packedSize(len(acc), k))
	packRing(out.packed, acc, k)
	c.input = nil
	if c.cfg.Malicious() {
		c.stage = cAwaitConsistency
	} else {
		c.stage = cAwaitUnmask
	}
	return c.out(out), nil
}

// checkSurvivors validates a survivor set U3 sent by the server.
func (c *Client) checkSurvivors(ids []uint32) error {
	if len(ids) < c.cfg.Threshold {
		return c.abort("only %d survivors, threshold is %d", len(ids), c.cfg.Threshold)
	}
	if _, found := slices.BinarySearch(ids, c.id); !found {
		return c.abort("survivor set omits this client")
	}
	for _, v := range ids {
		if int(v) >= c.cfg.Clients {
			return c.abort("survivor %d not in the cohort", v)
		}
		if i := c.peerIndex(v); i >= 0 && !c.peers[i].inU2 {
			return c.abort("survivor %d never sent this client its shares", v)
		}
	}
	return nil
}

func (c *Client) handleConsistency(m *message) ([]byte, error) {
	if err := c.checkSurvivors(m.ids); err != nil {
		return nil, err
	}
	c.survivors = m.ids
	c.stage = cAwaitUnmask
	sig := ed25519.Sign(c.signKey, consistencyTranscript(c.cfg.session(), m.ids))
	return c.out(&message{Header: Header{Type: MsgConsistencySig}, sig: sig}), nil
}

func (c *Client) handleUnmask(m *message) ([]byte, error) {
	if c.cfg.Malicious() {
		if !m.hasSigs {
			return nil, c.abort("unmask request without the survivors' signatures")
		}
		if !slices.Equal(m.ids, c.survivors) {
			return nil, c.abort("unmask request names a survivor set other than the one signed")
		}
		if len(m.sigs) < c.cfg.Threshold {
			return nil, c.abort("only %d survivors signed the survivor set, threshold is %d", len(m.sigs), c.cfg.Threshold)
		}
		transcript := consistencyTranscript(c.cfg.session(), m.ids)
		for _, s := range m.sigs {
			if _, in := slices.BinarySearch(m.ids, s.id); !in {
				return nil, c.abort("signature from client %d, not a survivor", s.id)
			}
			if !ed25519.Verify(c.cfg.VerifyKeys[s.id], transcript, s.sig) {
				return nil, c.abort("client %d's signature of the survivor set is invalid", s.id)
			}
		}
	} else {
		if m.hasSigs {
			return nil, c.abort("unexpected signatures in the semi-honest variant")
		}
		if err := c.checkSurvivors(m.ids); err != nil {
			return nil, err
		}
	}
	// Reveal exactly one share per neighbour that shared with us: b_u if u survived, the
	// masking key if it dropped. The stage then moves to done, so no later request can obtain
	// the other share of any neighbour.
	out := &message{Header: Header{Type: MsgUnmaskShares}}
	for i := range c.peers {
		p := &c.peers[i]
		if !p.inU2 {
			continue
		}
		e := shareEntry{about: p.id}
		if _, survived := slices.BinarySearch(m.ids, p.id); survived {
			e.kind, e.chunks = shareSelfMask, p.bShare
		} else {
			e.kind, e.chunks = shareMaskKey, p.sShare
		}
		out.shares = append(out.shares, e)
		p.bShare, p.sShare = [chunksPerSecret]uint64{}, [chunksPerSecret]uint64{}
	}
	c.stage = cDone
	clear(c.seed[:])
	clear(c.mask.secret[:])
	return c.out(out), nil
}
