package he

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"sync"
	"time"
)

// Identity is a party's signing identity: an X.509 certificate and the private key of the
// public key it certifies. Keys are ECDSA P-256 (Shoal's client certificates) or Ed25519, used
// through crypto.Signer so that the key may live in a token. Every statement a party signs
// names the run, so a signature never counts in another run or round.
type Identity struct {
	Certificate []byte        // DER
	Key         crypto.Signer // the key Certificate certifies
}

// Trust verifies a party's certificate against a trust root that the verifying party holds
// itself (its CA certificate, never one the server sends) and returns the certified name and
// public key. Two certificates with the same name are the same party.
type Trust interface {
	Verify(certificate []byte) (name string, key crypto.PublicKey, err error)
}

// Signature is a signed statement's certificate and signature value. What was signed is
// recomputed by the verifier from the message and its own view of the run; it is never sent.
type Signature struct {
	Certificate []byte // the signer's DER certificate
	Value       []byte // ECDSA (ASN.1) or Ed25519 signature over the statement's digest
}

// Wire bounds of a signature.
const (
	maxCertificateBytes = 8 << 10
	maxSignatureBytes   = 256
	maxNameBytes        = 256
)

// ErrUntrusted is wrapped by every refusal of a signature, a certificate or a signed set:
// a message the server may have forged or reused.
var ErrUntrusted = errors.New("he: not signed by a trusted party")

func untrusted(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUntrusted, fmt.Sprintf(format, args...))
}

// checkKey refuses public keys other than ECDSA P-256 and Ed25519.
func checkKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("ECDSA key on %s, want P-256", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return errors.New("malformed Ed25519 key")
		}
	default:
		return fmt.Errorf("unsupported key type %T (want ECDSA P-256 or Ed25519)", pub)
	}
	return nil
}

// check verifies that the identity's key is the one its certificate certifies.
func (id Identity) check() error {
	if id.Key == nil || len(id.Certificate) == 0 {
		return errors.New("he: identity without a certificate or key")
	}
	if len(id.Certificate) > maxCertificateBytes {
		return fmt.Errorf("he: identity certificate of %d bytes exceeds %d", len(id.Certificate), maxCertificateBytes)
	}
	cert, err := x509.ParseCertificate(id.Certificate)
	if err != nil {
		return fmt.Errorf("he: identity certificate: %w", err)
	}
	if err := checkKey(cert.PublicKey); err != nil {
		return fmt.Errorf("he: identity certificate: %w", err)
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(id.Key.Public()) {
		return errors.New("he: identity key does not match its certificate")
	}
	return nil
}

// sign signs a statement digest.
func (id Identity) sign(digest [32]byte) (Signature, error) {
	opts := crypto.Hash(crypto.SHA256)
	if _, ok := id.Key.Public().(ed25519.PublicKey); ok {
		opts = crypto.Hash(0) // Ed25519 signs the digest as its message
	}
	v, err := id.Key.Sign(rand.Reader, digest[:], opts)
	if err != nil {
		return Signature{}, fmt.Errorf("he: signing: %w", err)
	}
	return Signature{Certificate: id.Certificate, Value: v}, nil
}

func verifySignature(pub crypto.PublicKey, digest [32]byte, sig []byte) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(k, digest[:], sig)
	case ed25519.PublicKey:
		return ed25519.Verify(k, digest[:], sig)
	}
	return false
}

// verifier checks signatures against a Trust, remembering the certificates it verified.
type verifier struct {
	trust Trust
	mu    sync.Mutex
	certs map[[32]byte]certEntry
}

type certEntry struct {
	name string
	key  crypto.PublicKey
	err  error
}

// maxCachedCerts bounds a verifier's memory; past it the cache starts over.
const maxCachedCerts = 1 << 14

func newVerifier(t Trust) (*verifier, error) {
	if t == nil {
		return nil, errors.New("he: no trust root: every party must verify identities against a root it holds itself")
	}
	return &verifier{trust: t, certs: map[[32]byte]certEntry{}}, nil
}

// identify verifies a certificate and returns its name and key.
func (v *verifier) identify(cert []byte) (string, crypto.PublicKey, error) {
	if len(cert) == 0 || len(cert) > maxCertificateBytes {
		return "", nil, untrusted("certificate of %d bytes", len(cert))
	}
	h := sha256.Sum256(cert)
	v.mu.Lock()
	e, ok := v.certs[h]
	v.mu.Unlock()
	if !ok {
		e.name, e.key, e.err = v.trust.Verify(cert)
		if e.err == nil {
			if err := checkKey(e.key); err != nil {
				e.err = err
			} else if e.name == "" || len(e.name) > maxNameBytes {
				e.err = fmt.Errorf("certified name of %d bytes", len(e.name))
			}
		}
		v.mu.Lock()
		if len(v.certs) >= maxCachedCerts {
			clear(v.certs)
		}
		v.certs[h] = e
		v.mu.Unlock()
	}
	if e.err != nil {
		return "", nil, untrusted("certificate not trusted: %v", e.err)
	}
	return e.name, e.key, nil
}

// verify checks sig over digest and returns the signer's certified name.
func (v *verifier) verify(sig Signature, digest [32]byte) (string, error) {
	name, key, err := v.identify(sig.Certificate)
	if err != nil {
		return "", err
	}
	if len(sig.Value) == 0 || len(sig.Value) > maxSignatureBytes || !verifySignature(key, digest, sig.Value) {
		return "", untrusted("bad signature by %q", name)
	}
	return name, nil
}

// Signed statements. The digest is SHA-256 over a label, the statement kind, the run id and
// the statement's fields, each length-prefixed: a signature for one kind, run, ceremony or
// round is worthless for any other.
const statementLabel = "shoal/he/v2 signed statement\x00"

type statementKind byte

const (
	stmtCommitment  statementKind = 1 + iota // a member's key-generation commitment
	stmtEndorsement                          // a member's endorsement of the collective public key
	stmtUpload                               // a client's encrypted upload
	stmtApproval                             // a member's approval of a round's contributor set
)

type statement struct{ h hash.Hash }

func newStatement(kind statementKind, run RunID) *statement {
	s := &statement{h: sha256.New()}
	s.h.Write([]byte(statementLabel))
	s.h.Write([]byte{byte(kind)})
	s.h.Write(run[:])
	return s
}

func (s *statement) bytes(b []byte) *statement {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	s.h.Write(n[:])
	s.h.Write(b)
	return s
}

func (s *statement) u64(v uint64) *statement {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return s.bytes(b[:])
}

func (s *statement) sum() (d [32]byte) {
	s.h.Sum(d[:0])
	return d
}

// namesDigest binds an ordered list of certified names.
func namesDigest(names []string) [32]byte {
	h := sha256.New()
	h.Write([]byte("shoal/he/v2 names\x00"))
	var n [4]byte
	for _, name := range names {
		binary.BigEndian.PutUint32(n[:], uint32(len(name)))
		h.Write(n[:])
		h.Write([]byte(name))
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// CertPoolTrust verifies X.509 certificate chains up to Roots at the current time. The name
// is the certificate's CommonName unless Name says otherwise. KeyUsages defaults to any.
// (Shoal's client certificates are verified by package pki's verifier, with its naming rule.)
type CertPoolTrust struct {
	Roots     *x509.CertPool
	KeyUsages []x509.ExtKeyUsage
	Name      func(*x509.Certificate) (string, error)
}

// Verify implements Trust.
func (t *CertPoolTrust) Verify(der []byte) (string, crypto.PublicKey, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return "", nil, err
	}
	usages := t.KeyUsages
	if usages == nil {
		usages = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: t.Roots, KeyUsages: usages}); err != nil {
		return "", nil, err
	}
	name := cert.Subject.CommonName
	if t.Name != nil {
		if name, err = t.Name(cert); err != nil {
			return "", nil, err
		}
	}
	return name, cert.PublicKey, nil
}

// SimCA is an in-memory certificate authority for simulations, benchmarks and tests, where
// every party lives in one process: it issues ECDSA P-256 identities named by their
// CommonName, and Trust verifies them. It is never persisted. Deployments use the client
// certificates of package pki instead.
type SimCA struct {
	cert   *x509.Certificate
	key    crypto.Signer
	trust  *CertPoolTrust
	mu     sync.Mutex
	serial int64
}

// The in-memory CA's validity is fixed so that its certificates are reproducible under a
// deterministic crypto/rand (testing/cryptotest).
var (
	simNotBefore = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	simNotAfter  = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// NewSimCA creates an in-memory CA.
func NewSimCA() (*SimCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("he: simulated CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Shoal simulated CA"},
		NotBefore: simNotBefore, NotAfter: simNotAfter,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("he: simulated CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &SimCA{cert: cert, key: key, trust: &CertPoolTrust{Roots: pool}, serial: 1}, nil
}

// Issue returns a fresh identity named name.
func (ca *SimCA) Issue(name string) (Identity, error) {
	if name == "" || len(name) > 64 {
		return Identity{}, fmt.Errorf("he: identity name %q must have 1 to 64 bytes", name)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Identity{}, fmt.Errorf("he: identity key: %w", err)
	}
	ca.mu.Lock()
	ca.serial++
	serial := ca.serial
	ca.mu.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: simNotBefore, NotAfter: simNotAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return Identity{}, fmt.Errorf("he: issuing identity %q: %w", name, err)
	}
	return Identity{Certificate: der, Key: key}, nil
}

// Trust verifies the identities this CA issued.
func (ca *SimCA) Trust() Trust { return ca.trust }

// sameSignature reports whether two signatures are byte-identical.
func sameSignature(a, b Signature) bool {
	return bytes.Equal(a.Certificate, b.Certificate) && bytes.Equal(a.Value, b.Value)
}
