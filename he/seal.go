package he

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
)

// Shares of the secret key travel member to member through the server sealed with
// X25519 (the ceremony's ephemeral keys) + HKDF-SHA256 + AES-256-GCM. The key is bound
// to the ceremony, the sender, the receiver and both public keys; the associated data
// repeats ceremony, sender and receiver so a relayed box cannot be replayed to another
// member, another direction or another ceremony.
const sealLabel = "shoal/he/v1 threshold share"

const gcmNonceSize = 12

func sealBinding(ceremony CeremonyID, from, to PartyID) []byte {
	b := make([]byte, 0, len(sealLabel)+len(ceremony)+16)
	b = append(b, sealLabel...)
	b = append(b, ceremony[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(from))
	b = binary.BigEndian.AppendUint64(b, uint64(to))
	return b
}

func sealKey(ceremony CeremonyID, from, to PartyID, shared []byte, fromPub, toPub []byte) (cipher.AEAD, error) {
	info := string(sealBinding(ceremony, from, to)) + string(fromPub) + string(toPub)
	key, err := hkdf.Key(sha256.New, shared, ceremony[:], info, 32)
	if err != nil {
		return nil, fmt.Errorf("he: deriving share key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("he: share cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("he: share cipher: %w", err)
	}
	return aead, nil
}

// seal encrypts plaintext from `from` (private key priv) to `to` (public key toPub).
func seal(ceremony CeremonyID, from, to PartyID, priv *ecdh.PrivateKey, toPub *ecdh.PublicKey, plaintext []byte, random io.Reader) ([]byte, error) {
	shared, err := priv.ECDH(toPub)
	if err != nil {
		return nil, fmt.Errorf("he: key agreement with member %d: %w", to, err)
	}
	aead, err := sealKey(ceremony, from, to, shared, priv.PublicKey().Bytes(), toPub.Bytes())
	if err != nil {
		return nil, err
	}
	out := make([]byte, gcmNonceSize, gcmNonceSize+len(plaintext)+aead.Overhead())
	if _, err := io.ReadFull(random, out); err != nil {
		return nil, fmt.Errorf("he: share nonce: %w", err)
	}
	return aead.Seal(out, out, plaintext, sealBinding(ceremony, from, to)), nil
}

// open decrypts a box sealed by `from` (public key fromPub) for `to` (private key priv).
func open(ceremony CeremonyID, from, to PartyID, priv *ecdh.PrivateKey, fromPub *ecdh.PublicKey, box []byte) ([]byte, error) {
	if len(box) < gcmNonceSize+16 {
		return nil, fmt.Errorf("he: sealed share from member %d is too short", from)
	}
	shared, err := priv.ECDH(fromPub)
	if err != nil {
		return nil, fmt.Errorf("he: key agreement with member %d: %w", from, err)
	}
	aead, err := sealKey(ceremony, from, to, shared, fromPub.Bytes(), priv.PublicKey().Bytes())
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, box[:gcmNonceSize], box[gcmNonceSize:], sealBinding(ceremony, from, to))
	if err != nil {
		return nil, fmt.Errorf("he: sealed share from member %d does not authenticate: %w", from, err)
	}
	return pt, nil
}
