package pki

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// The operator role: a person who may look at a run's dashboard. An operator certificate is
// issued by the run's CA like a client's, but it carries the URI SAN shoal://operator/NAME and
// no shoal://client URI, so neither role can stand for the other: the Federation service
// refuses it (no client name), and the dashboard refuses client certificates.
//
//	operators/NAME.pem, NAME-key.pem  one operator's certificate and key
const (
	OperatorsDir     = "operators"
	operatorURIHost  = "operator"
	operatorOrgUnit  = "Shoal operator"
	operatorRoleName = "operator"
)

// ErrNotOperator is wrapped by the dashboard's refusal of a certificate of the CA that is not
// an operator's (a client's certificate, for instance).
var ErrNotOperator = errors.New("not an operator certificate")

// IssueOperator issues an operator certificate for name, signed by the CA in dir:
// dir/operators/NAME.pem and NAME-key.pem. It refuses to replace an existing one (revoke it
// with its serial in revoked.txt and remove the files first).
func IssueOperator(dir, name string) error {
	if err := ValidName(name); err != nil {
		return fmt.Errorf("issue operator certificate: %w", err)
	}
	caCert, caKey, err := loadCA(dir)
	if err != nil {
		return fmt.Errorf("issue operator certificate %q: %w", name, err)
	}
	certPath, keyPath := OperatorPaths(dir, name)
	if _, err := os.Stat(certPath); err == nil {
		return fmt.Errorf("issue operator certificate %q: %s exists", name, certPath)
	}
	if err := os.MkdirAll(filepath.Join(dir, OperatorsDir), 0o700); err != nil {
		return fmt.Errorf("issue operator certificate %q: %w", name, err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name, Organization: []string{operatorOrgUnit}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{{Scheme: clientURIScheme, Host: operatorURIHost, Path: "/" + name}},
	}
	if err := issueLeaf(caCert, caKey, tmpl, certPath, keyPath); err != nil {
		return fmt.Errorf("issue operator certificate %q: %w", name, err)
	}
	return nil
}

// OperatorPaths are the certificate and key files of operator name in dir.
func OperatorPaths(dir, name string) (cert, key string) {
	base := filepath.Join(dir, OperatorsDir, name)
	return base + ".pem", base + "-key.pem"
}

// OperatorName returns the operator name a certificate carries, or an error wrapping
// ErrNotOperator: it must have exactly one shoal://operator/NAME URI agreeing with its
// CommonName, and no shoal://client URI.
func OperatorName(c *x509.Certificate) (string, error) {
	var name string
	for _, u := range c.URIs {
		if u.Scheme != clientURIScheme {
			continue
		}
		switch u.Host {
		case clientURIHost:
			return "", fmt.Errorf("%w: a client certificate (%s)", ErrNotOperator, u)
		case operatorURIHost:
			if name != "" {
				return "", fmt.Errorf("%w: more than one operator URI", ErrNotOperator)
			}
			name = strings.TrimPrefix(u.Path, "/")
		}
	}
	if name == "" || name != c.Subject.CommonName || ValidName(name) != nil {
		return "", fmt.Errorf("%w (CN %q): no shoal://%s/NAME URI agreeing with it", ErrNotOperator, c.Subject.CommonName, operatorRoleName)
	}
	return name, nil
}

// OperatorTLSConfig is the dashboard's TLS configuration: TLS 1.3, the server certificate of
// dir, and a client certificate required, verified against the CA of dir, not revoked (the
// revocation list of dir, failing closed as for clients), and an operator's (OperatorName).
func OperatorTLSConfig(dir string) (*tls.Config, error) {
	cfg, _, err := OperatorTLS(dir)
	return cfg, err
}

// OperatorTLS is OperatorTLSConfig and the revocation list its handshakes check, which the
// caller uses to re-check connections that outlive a revocation (a kept-alive connection, an
// event stream): the handshake alone admits a connection once.
func OperatorTLS(dir string) (*tls.Config, *Revocations, error) {
	rev, err := OpenRevocations(dir, RevocationOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("dashboard TLS config: %w", err)
	}
	pool, err := loadPool(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("dashboard TLS config: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, ServerFile), filepath.Join(dir, ServerKeyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("dashboard TLS config: load server certificate: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		NextProtos:   []string{"h2", "http/1.1"},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("shoal dashboard: no operator certificate")
			}
			leaf := cs.PeerCertificates[0]
			if _, err := OperatorName(leaf); err != nil {
				return fmt.Errorf("shoal dashboard: %w", err)
			}
			rev.refreshIfTouched()
			if err := rev.Check(leaf); err != nil {
				return fmt.Errorf("shoal dashboard: %w", err)
			}
			return nil
		},
	}, rev, nil
}

// OperatorTLSClientConfig is what a program (or a test) uses to open the dashboard as
// operator name of dir, expecting its server certificate to be valid for serverName.
func OperatorTLSClientConfig(dir, name, serverName string) (*tls.Config, error) {
	pool, err := loadPool(dir)
	if err != nil {
		return nil, fmt.Errorf("operator TLS config: %w", err)
	}
	certPath, keyPath := OperatorPaths(dir, name)
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("operator TLS config: load certificate of %q: %w", name, err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: serverName}, nil
}
