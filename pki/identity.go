package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Identities for application-level signatures (the threshold-HE committee and its clients sign
// what they send, so that a server relaying their messages cannot forge or swap them). The
// identity is the client certificate of mutual TLS, its key used as a crypto.Signer, and the
// verifier checks a certificate against a CA certificate the verifying party holds itself.

// LoadClientIdentity reads client name's certificate and private key from dir
// (clients/NAME.pem, clients/NAME-key.pem) and returns the certificate in DER and the key as a
// crypto.Signer. It checks that the key is the certificate's and that the certificate names
// name.
func LoadClientIdentity(dir, name string) (cert []byte, key crypto.Signer, err error) {
	if err := ValidName(name); err != nil {
		return nil, nil, err
	}
	certPath, keyPath := clientPaths(dir, name)
	c, err := readCert(certPath)
	if err != nil {
		return nil, nil, fmt.Errorf("client identity %q: %w", name, err)
	}
	if got, err := certName(c); err != nil || got != name {
		return nil, nil, fmt.Errorf("client identity %q: %s does not certify this name (%q, %v)", name, certPath, got, err)
	}
	key, err = readSigner(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("client identity %q: %w", name, err)
	}
	if pub, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return nil, nil, fmt.Errorf("client identity %q: %s does not match %s", name, keyPath, certPath)
	}
	return c.Raw, key, nil
}

func readSigner(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s holds no PEM \"PRIVATE KEY\" block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: unsupported key type %T", path, k)
	}
	return signer, nil
}

// LoadCA reads the CA certificate dir/ca.pem: the trust root a party verifies others against.
func LoadCA(dir string) (*x509.Certificate, error) {
	ca, err := readCert(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	if !ca.IsCA {
		return nil, fmt.Errorf("load CA: %s is not a CA certificate", filepath.Join(dir, CAFile))
	}
	return ca, nil
}

// ClientVerifier verifies client certificates against one CA certificate: the chain, the
// client-authentication usage, the validity period, a key that is ECDSA P-256 or Ed25519,
// and a valid identity (CommonName and URI SAN shoal://client/NAME agreeing). It consults a
// revocation list only if given one (WithRevocations): the server holds revoked.txt, the
// clients do not.
type ClientVerifier struct {
	roots   *x509.CertPool
	now     func() time.Time
	revoked *Revocations
}

// WithRevocations returns a verifier that also refuses the certificates r revokes (and every
// certificate while r is unusable, as r does).
func (v *ClientVerifier) WithRevocations(r *Revocations) *ClientVerifier {
	c := *v
	c.revoked = r
	return &c
}

// NewClientVerifier trusts the client certificates ca issued.
func NewClientVerifier(ca *x509.Certificate) (*ClientVerifier, error) {
	if ca == nil || !ca.IsCA {
		return nil, errors.New("client verifier: not a CA certificate")
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &ClientVerifier{roots: pool, now: time.Now}, nil
}

// LoadClientVerifier trusts the client certificates issued by the CA in dir (dir/ca.pem).
func LoadClientVerifier(dir string) (*ClientVerifier, error) {
	ca, err := LoadCA(dir)
	if err != nil {
		return nil, err
	}
	return NewClientVerifier(ca)
}

// Verify checks a DER client certificate and returns its client name and public key.
func (v *ClientVerifier) Verify(der []byte) (string, crypto.PublicKey, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return "", nil, fmt.Errorf("client certificate: %w", err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: v.roots, CurrentTime: v.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return "", nil, fmt.Errorf("client certificate (CN %q): %w", c.Subject.CommonName, err)
	}
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", nil, fmt.Errorf("client certificate (CN %q): ECDSA key not on P-256", c.Subject.CommonName)
		}
	case ed25519.PublicKey:
	default:
		return "", nil, fmt.Errorf("client certificate (CN %q): unsupported key type %T", c.Subject.CommonName, c.PublicKey)
	}
	name, err := certName(c)
	if err != nil {
		return "", nil, err
	}
	if v.revoked != nil {
		if err := v.revoked.Check(c); err != nil {
			return "", nil, err
		}
	}
	return name, c.PublicKey, nil
}

// MemoryCA is a certificate authority that lives in memory only, for simulations and tests
// in which every party runs in one process: it issues client certificates of the same form
// as IssueClient (ECDSA P-256, CommonName and URI SAN naming the client, client
// authentication), which its Verifier accepts.
type MemoryCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	mu   sync.Mutex
}

// NewMemoryCA creates an in-memory CA.
func NewMemoryCA() (*MemoryCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("memory CA: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("memory CA: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Shoal in-memory CA", Organization: []string{"Shoal"}},
		NotBefore:             now.Add(-clockSkewSlack),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("memory CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("memory CA: %w", err)
	}
	return &MemoryCA{cert: cert, key: key}, nil
}

// Certificate returns the CA certificate.
func (ca *MemoryCA) Certificate() *x509.Certificate { return ca.cert }

// IssueClient returns a new client certificate (DER) for name and its key.
func (ca *MemoryCA) IssueClient(name string) (cert []byte, key crypto.Signer, err error) {
	if err := ValidName(name); err != nil {
		return nil, nil, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("issue %q: %w", name, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, fmt.Errorf("issue %q: %w", name, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"Shoal client"}},
		NotBefore:    now.Add(-clockSkewSlack),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{clientURI(name)},
	}
	ca.mu.Lock()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, k.Public(), ca.key)
	ca.mu.Unlock()
	if err != nil {
		return nil, nil, fmt.Errorf("issue %q: %w", name, err)
	}
	return der, k, nil
}

// Verifier trusts the client certificates this CA issues.
func (ca *MemoryCA) Verifier() *ClientVerifier {
	v, _ := NewClientVerifier(ca.cert) // ca.cert is a CA certificate
	return v
}

// SelfSignedClient returns a throwaway self-signed client certificate for name and its key,
// for runs without a certificate authority (--insecure, testing only), to be verified with
// InsecureClientVerifier.
func SelfSignedClient(name string) (cert []byte, key crypto.Signer, err error) {
	if err := ValidName(name); err != nil {
		return nil, nil, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("self-signed %q: %w", name, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, fmt.Errorf("self-signed %q: %w", name, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"Shoal client (self-signed)"}},
		NotBefore:    now.Add(-clockSkewSlack),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{clientURI(name)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		return nil, nil, fmt.Errorf("self-signed %q: %w", name, err)
	}
	return der, k, nil
}

// InsecureClientVerifier accepts any well-formed self-signed client certificate and the name
// it claims. It authenticates nobody — whoever relays the messages (the server) can mint any
// identity — and exists only so that --insecure test runs keep the protocol's shape.
type InsecureClientVerifier struct{}

// Verify checks only the certificate's form and self-signature.
func (InsecureClientVerifier) Verify(der []byte) (string, crypto.PublicKey, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return "", nil, fmt.Errorf("client certificate: %w", err)
	}
	if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
		return "", nil, fmt.Errorf("client certificate (CN %q) is not self-signed: %w", c.Subject.CommonName, err)
	}
	name, err := certName(c)
	if err != nil {
		return "", nil, err
	}
	return name, c.PublicKey, nil
}
