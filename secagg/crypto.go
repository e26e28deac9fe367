package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cloudflare/circl/dh/x25519"
)

// hkdfSalt separates this protocol's keys from any other use of the same key pairs.
var hkdfSalt = []byte("shoal/secagg/v2")

// session is what binds a derived key, signature or commitment to one round of one run.
type session struct {
	run   [16]byte // Config.RunID
	round uint64
}

func (c *Config) session() session { return session{run: c.RunID, round: c.Round} }

// appendSession appends the run id and round number.
func appendSession(dst []byte, s session) []byte {
	dst = append(dst, s.run[:]...)
	return binary.BigEndian.AppendUint64(dst, s.round)
}

// keyPair is an X25519 key pair.
type keyPair struct {
	secret, public x25519.Key
}

func newKeyPair(r *byteStream) keyPair {
	var kp keyPair
	_, _ = r.Read(kp.secret[:])
	x25519.KeyGen(&kp.public, &kp.secret)
	return kp
}

// keyInfo binds a derived key to its purpose, the run, the round and the (unordered) pair of
// clients.
func keyInfo(purpose byte, s session, a, b uint32) string {
	if a > b {
		a, b = b, a
	}
	var info [1 + 16 + 8 + 4 + 4]byte
	info[0] = purpose
	copy(info[1:], s.run[:])
	binary.BigEndian.PutUint64(info[17:], s.round)
	binary.BigEndian.PutUint32(info[25:], a)
	binary.BigEndian.PutUint32(info[29:], b)
	return string(info[:])
}

const (
	purposeChannel byte = 'c'
	purposeMask    byte = 'm'
	purposeSelf    byte = 's'
)

// agree computes the X25519 shared secret and derives a 16-byte key for purpose with HKDF-SHA256.
// A low-order peer public key (all-zero shared secret) is rejected.
func agree(secret, peerPublic *x25519.Key, purpose byte, s session, self, peer uint32) ([16]byte, error) {
	var shared x25519.Key
	var out [16]byte
	if !x25519.Shared(&shared, secret, peerPublic) {
		return out, fmt.Errorf("key agreement with client %d: low-order public key", peer)
	}
	k, err := hkdf.Key(sha256.New, shared[:], hkdfSalt, keyInfo(purpose, s, self, peer), len(out))
	if err != nil {
		return out, fmt.Errorf("deriving key with client %d: %w", peer, err)
	}
	copy(out[:], k)
	return out, nil
}

// selfMaskKey derives the PRG key of client u's self mask from its seed b_u.
func selfMaskKey(seed *[secretSize]byte, s session, u uint32) ([prgKeySize]byte, error) {
	var out [prgKeySize]byte
	k, err := hkdf.Key(sha256.New, seed[:], hkdfSalt, keyInfo(purposeSelf, s, u, u), len(out))
	if err != nil {
		return out, fmt.Errorf("deriving self-mask key: %w", err)
	}
	copy(out[:], k)
	return out, nil
}

// shareTag prefixes the associated data of encrypted shares.
const shareTag = "shoal/secagg/v2 share"

// sharePlainSize is the plaintext of one encrypted share message: the shares of b_u and of the
// masking secret key, chunksPerSecret field elements each.
const sharePlainSize = 2 * chunksPerSecret * 8

// shareCipherSize is the size of one encrypted share (AES-GCM adds a 16-byte tag).
const shareCipherSize = sharePlainSize + 16

func shareAEAD(key *[16]byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, fmt.Errorf("share cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("share cipher: %w", err)
	}
	return aead, nil
}

// shareNonceAD returns the GCM nonce and associated data for the share sent from sender to
// receiver in a round. The channel key is used once in each direction, so (sender, receiver)
// makes the nonce unique under the key; the associated data binds run, round, sender and
// receiver (the key itself is derived for that run and round).
func shareNonceAD(s session, sender, receiver uint32) (nonce [12]byte, ad [len(shareTag) + 32]byte) {
	binary.BigEndian.PutUint32(nonce[0:], sender)
	binary.BigEndian.PutUint32(nonce[4:], receiver)
	copy(ad[:], shareTag)
	copy(ad[len(shareTag):], s.run[:])
	binary.BigEndian.PutUint64(ad[len(shareTag)+16:], s.round)
	binary.BigEndian.PutUint32(ad[len(shareTag)+24:], sender)
	binary.BigEndian.PutUint32(ad[len(shareTag)+28:], receiver)
	return nonce, ad
}

func sealShare(key *[16]byte, s session, sender, receiver uint32, bShare, sShare []uint64, dst []byte) ([]byte, error) {
	aead, err := shareAEAD(key)
	if err != nil {
		return nil, err
	}
	var plain [sharePlainSize]byte
	for i := range chunksPerSecret {
		binary.LittleEndian.PutUint64(plain[8*i:], bShare[i])
		binary.LittleEndian.PutUint64(plain[8*(chunksPerSecret+i):], sShare[i])
	}
	nonce, ad := shareNonceAD(s, sender, receiver)
	return aead.Seal(dst, nonce[:], plain[:], ad[:]), nil
}

var errShareAuth = errors.New("encrypted share fails authentication (wrong key, run, round, sender or receiver, or tampered)")

func openShare(key *[16]byte, s session, sender, receiver uint32, ct []byte, bShare, sShare []uint64) error {
	aead, err := shareAEAD(key)
	if err != nil {
		return err
	}
	nonce, ad := shareNonceAD(s, sender, receiver)
	var plain [sharePlainSize]byte
	if _, err := aead.Open(plain[:0], nonce[:], ct, ad[:]); err != nil {
		return errShareAuth
	}
	for i := range chunksPerSecret {
		bShare[i] = binary.LittleEndian.Uint64(plain[8*i:])
		sShare[i] = binary.LittleEndian.Uint64(plain[8*(chunksPerSecret+i):])
		if bShare[i] >= fieldP || sShare[i] >= fieldP {
			return errors.New("decrypted share is not a field element")
		}
	}
	return nil
}
