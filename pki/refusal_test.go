package pki

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
)

func clientCert(t *testing.T, dir, name string) *x509.Certificate {
	t.Helper()
	certPath, _ := clientPaths(dir, name)
	c, err := readCert(certPath)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The handshake check with DeferRevoked lets a revoked certificate through (the transport
// refuses its Hello and says why), never one while the list is unusable, and never one
// without a valid client name; without DeferRevoked the revoked certificate is refused.
// Each refusal is classified for shoal_refused_total.
func TestVerifyClientDeferRevoked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := InitCA(dir, nil, false); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"alice", "mallory"} {
		if err := IssueClient(dir, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := Revoke(dir, "mallory"); err != nil {
		t.Fatal(err)
	}
	rev, err := OpenRevocations(dir, RevocationOptions{})
	if err != nil {
		t.Fatal(err)
	}
	state := func(c *x509.Certificate) tls.ConnectionState {
		return tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}}
	}
	mallory, alice := state(clientCert(t, dir, "mallory")), state(clientCert(t, dir, "alice"))
	deferred := ServerTLSOptions{DeferRevoked: true}
	if err := verifyClient(mallory, rev, deferred); err != nil {
		t.Fatalf("revoked certificate with DeferRevoked: %v, want the handshake to pass", err)
	}
	err = verifyClient(mallory, rev, ServerTLSOptions{})
	if err == nil || RefusalReason(err) != RefusedRevoked {
		t.Fatalf("revoked certificate without DeferRevoked: %v (%s)", err, RefusalReason(fmt.Errorf("x: %w", err)))
	}
	if err := verifyClient(alice, rev, deferred); err != nil {
		t.Fatal(err)
	}

	// A certificate of the CA whose CommonName and URI SAN disagree.
	caCert, caKey, err := loadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	odd := filepath.Join(t.TempDir(), "odd")
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "alice"}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, URIs: []*url.URL{clientURI("bob")}}
	if err := issueLeaf(caCert, caKey, tmpl, odd+".pem", odd+"-key.pem"); err != nil {
		t.Fatal(err)
	}
	bad, err := readCert(odd + ".pem")
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyClient(state(bad), rev, deferred); RefusalReason(err) != RefusedBadName {
		t.Fatalf("certificate without a valid name: %v, want %s", err, RefusedBadName)
	}

	// Fail closed: with the list gone, the revoked and the others are refused, deferred or not.
	if err := os.Remove(filepath.Join(dir, RevokedFile)); err != nil {
		t.Fatal(err)
	}
	for _, cs := range []tls.ConnectionState{mallory, alice} {
		if err := verifyClient(cs, rev, deferred); RefusalReason(err) != RefusedRevocationList {
			t.Fatalf("with the list deleted: %v, want %s", err, RefusedRevocationList)
		}
	}
}

// RefusalReason on the errors crypto/tls and crypto/x509 return.
func TestRefusalReason(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, RefusedUnknownCA},
		{&tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.Expired}}, RefusedExpired},
		{&tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.IncompatibleUsage}}, RefusedBadCertificate},
		{errors.New("tls: client didn't provide a certificate"), RefusedNoCertificate},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}, RefusedByClient},
		{fmt.Errorf("read: %w", io.EOF), RefusedAborted},
		{errors.New("tls: client offered only unsupported versions"), RefusedHandshake},
	} {
		if got := RefusalReason(c.err); got != c.want {
			t.Errorf("RefusalReason(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}
