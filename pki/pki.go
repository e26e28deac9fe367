// Package pki creates and checks the identities Shoal's server and clients use for mutual
// TLS 1.3: a private certificate authority, one server certificate, one certificate per client,
// and a revocation list.
//
// A client's identity is its certificate: the CommonName and a URI SAN "shoal://client/NAME"
// both carry NAME, and PeerName accepts a connection's identity only when the two agree on a
// chain the server verified. That identity is the one the secure-sum protocols use, so a client
// cannot speak for another.
//
// Layout of a certificate directory (created 0700, private keys 0600):
//
//	ca.pem, ca-key.pem              the CA (keep ca-key.pem on the machine that issues certificates)
//	server.pem, server-key.pem      the server's certificate and key
//	clients/NAME.pem, NAME-key.pem  one client's certificate and key
//	revoked.txt                     revoked client serials, lowercase hex, one per line
//
// A server needs ca.pem, server.pem, server-key.pem and revoked.txt; a client needs ca.pem and
// its own clients/NAME*.pem, in the same layout. The server must not have ca-key.pem: whoever
// holds it can mint identities.
//
// Revocation fails closed: while revoked.txt is missing (InitCA writes an empty one),
// unreadable or malformed, the server refuses every client (see Revocations).
//
// This package depends only on the standard library; it must not depend on the rest of Shoal.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// File names inside a certificate directory.
const (
	CAFile        = "ca.pem"
	CAKeyFile     = "ca-key.pem"
	ServerFile    = "server.pem"
	ServerKeyFile = "server-key.pem"
	ClientsDir    = "clients"
	RevokedFile   = "revoked.txt"
)

// Validity periods. Clocks of clients may lag: certificates are valid from a few minutes ago.
const (
	caValidity     = 10 * 365 * 24 * time.Hour
	leafValidity   = 2 * 365 * 24 * time.Hour
	clockSkewSlack = 5 * time.Minute
)

// clientURIScheme and clientURIHost form the URI SAN of a client certificate:
// shoal://client/NAME.
const (
	clientURIScheme = "shoal"
	clientURIHost   = "client"
)

// DefaultHosts are the names a server certificate is valid for when InitCA gets none.
var DefaultHosts = []string{"localhost", "127.0.0.1", "::1"}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,64}$`)

// ValidName reports whether name can be a client identity: 1 to 64 characters of
// [a-zA-Z0-9._-], and not "." or ".." (which would escape the clients directory).
func ValidName(name string) error {
	if !nameRE.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("invalid client name %q: want 1 to 64 characters of [a-zA-Z0-9._-], not \".\" or \"..\"", name)
	}
	return nil
}

// InitCA creates dir (0700) with a new ECDSA P-256 CA (ca.pem, ca-key.pem) and a server
// certificate (server.pem, server-key.pem) valid for hosts (DNS names or IP addresses; default
// "localhost", "127.0.0.1", "::1"), and an empty revocation list (revoked.txt) unless one
// exists. It refuses to overwrite an existing CA unless force; with force, certificates issued
// by the old CA no longer verify and must be issued again (an existing revoked.txt is kept).
func InitCA(dir string, hosts []string, force bool) error {
	if dir == "" {
		return errors.New("init CA: empty directory name")
	}
	if len(hosts) == 0 {
		hosts = DefaultHosts
	}
	dnsNames, ips, err := parseHosts(hosts)
	if err != nil {
		return fmt.Errorf("init CA in %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("init CA: create %s: %w", dir, err)
	}
	if !force {
		for _, f := range []string{CAFile, CAKeyFile} {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				return fmt.Errorf("init CA: %s already exists (use force to replace the CA and invalidate every certificate it issued)", filepath.Join(dir, f))
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("init CA: %w", err)
			}
		}
	}

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("init CA: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return fmt.Errorf("init CA: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Shoal CA", Organization: []string{"Shoal"}},
		NotBefore:             now.Add(-clockSkewSlack),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return fmt.Errorf("init CA: sign CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fmt.Errorf("init CA: parse new CA certificate: %w", err)
	}
	// Key first: a ca.pem without its key would block a later InitCA without being usable.
	if err := writeKey(filepath.Join(dir, CAKeyFile), caKey); err != nil {
		return fmt.Errorf("init CA: %w", err)
	}
	if err := writeCert(filepath.Join(dir, CAFile), caDER); err != nil {
		return fmt.Errorf("init CA: %w", err)
	}
	if err := issueServer(dir, caCert, caKey, dnsNames, ips); err != nil {
		return fmt.Errorf("init CA: %w", err)
	}
	// An empty list, so that a fresh setup serves: a server refuses every client while there
	// is none (fail closed).
	revoked := filepath.Join(dir, RevokedFile)
	if _, err := os.Lstat(revoked); errors.Is(err, fs.ErrNotExist) {
		if err := writeFileAtomic(revoked, []byte(emptyRevokedList), 0o644); err != nil {
			return fmt.Errorf("init CA: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("init CA: %w", err)
	}
	return nil
}

// emptyRevokedList is the content of a new revocation list: no serial.
const emptyRevokedList = "# Shoal revocation list: revoked client certificate serials, lowercase hex, one per line.\n" +
	"# The server refuses every client while this file is missing or malformed.\n"

// IssueServer issues a new server certificate (server.pem, server-key.pem) for hosts, signed
// by the existing CA in dir: use it when the server moves to another name or address.
func IssueServer(dir string, hosts []string) error {
	if len(hosts) == 0 {
		hosts = DefaultHosts
	}
	dnsNames, ips, err := parseHosts(hosts)
	if err != nil {
		return fmt.Errorf("issue server certificate: %w", err)
	}
	caCert, caKey, err := loadCA(dir)
	if err != nil {
		return fmt.Errorf("issue server certificate: %w", err)
	}
	if err := issueServer(dir, caCert, caKey, dnsNames, ips); err != nil {
		return fmt.Errorf("issue server certificate: %w", err)
	}
	return nil
}

func issueServer(dir string, caCert *x509.Certificate, caKey crypto.Signer, dnsNames []string, ips []net.IP) error {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "Shoal server", Organization: []string{"Shoal"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    dnsNames,
		IPAddresses: ips,
	}
	if err := issueLeaf(caCert, caKey, tmpl, filepath.Join(dir, ServerFile), filepath.Join(dir, ServerKeyFile)); err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	return nil
}

// IssueClient issues a client certificate for name, signed by the CA in dir:
// dir/clients/NAME.pem and NAME-key.pem. The identity is carried twice, as the CommonName and
// as the URI SAN shoal://client/NAME. Names are 1 to 64 characters of [a-zA-Z0-9._-].
// It refuses to replace a certificate for name that is still valid under the CA; revoke it first.
func IssueClient(dir, name string) error {
	if err := ValidName(name); err != nil {
		return fmt.Errorf("issue client certificate: %w", err)
	}
	caCert, caKey, err := loadCA(dir)
	if err != nil {
		return fmt.Errorf("issue client certificate %q: %w", name, err)
	}
	certPath, keyPath := clientPaths(dir, name)
	if old, err := readCert(certPath); err == nil {
		revoked, err := readRevoked(filepath.Join(dir, RevokedFile))
		if err != nil {
			return fmt.Errorf("issue client certificate %q: %w", name, err)
		}
		if old.CheckSignatureFrom(caCert) == nil && time.Now().Before(old.NotAfter) && !revoked[serialText(old.SerialNumber)] {
			return fmt.Errorf("issue client certificate %q: %s holds a valid certificate for this name (serial %s); revoke it first", name, certPath, serialText(old.SerialNumber))
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("issue client certificate %q: existing certificate: %w", name, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, ClientsDir), 0o700); err != nil {
		return fmt.Errorf("issue client certificate %q: %w", name, err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name, Organization: []string{"Shoal client"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{clientURI(name)},
	}
	if err := issueLeaf(caCert, caKey, tmpl, certPath, keyPath); err != nil {
		return fmt.Errorf("issue client certificate %q: %w", name, err)
	}
	return nil
}

// ClientSerial returns the serial number (lowercase hex, as in revoked.txt) of the client
// certificate dir/clients/NAME.pem.
func ClientSerial(dir, name string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	certPath, _ := clientPaths(dir, name)
	cert, err := readCert(certPath)
	if err != nil {
		return "", fmt.Errorf("client %q: %w", name, err)
	}
	return serialText(cert.SerialNumber), nil
}

// ClientInfo describes one issued client certificate.
type ClientInfo struct {
	Name     string
	Serial   string
	NotAfter time.Time
	Revoked  bool
	// Valid: signed by the current CA, not expired, not revoked.
	Valid bool
}

// ListClients describes the client certificates in dir/clients, ordered by name.
func ListClients(dir string) ([]ClientInfo, error) {
	caCert, err := readCert(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("list clients: load CA: %w", err)
	}
	revoked, err := readRevoked(filepath.Join(dir, RevokedFile))
	if err != nil {
		return nil, fmt.Errorf("list clients: %w", err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, ClientsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list clients: %w", err)
	}
	var out []ClientInfo
	now := time.Now()
	for _, e := range entries { // ReadDir sorts by file name
		name, ok := strings.CutSuffix(e.Name(), ".pem")
		if !ok || strings.HasSuffix(name, "-key") || ValidName(name) != nil {
			continue
		}
		cert, err := readCert(filepath.Join(dir, ClientsDir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("list clients: %w", err)
		}
		serial := serialText(cert.SerialNumber)
		info := ClientInfo{Name: name, Serial: serial, NotAfter: cert.NotAfter, Revoked: revoked[serial]}
		info.Valid = !info.Revoked && cert.CheckSignatureFrom(caCert) == nil && now.Before(cert.NotAfter)
		out = append(out, info)
	}
	return out, nil
}

// Serial returns a certificate's serial number as written in revoked.txt (lowercase hex).
func Serial(cert *x509.Certificate) string { return serialText(cert.SerialNumber) }

// Revoke adds the serial of the client certificate dir/clients/NAME.pem to dir/revoked.txt
// (one lowercase-hex serial per line, followed by a "# NAME time" comment). Revoking twice is
// not an error. The list must exist (InitCA writes it): recreating a lost list would un-revoke
// every certificate it named. A running server refuses the client from its next handshake, and
// one that re-checks its sessions (grpctransport) closes the client's session within one
// heartbeat.
func Revoke(dir, name string) error {
	serial, err := ClientSerial(dir, name)
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	path := filepath.Join(dir, RevokedFile)
	revoked, err := readRevoked(path)
	if err != nil {
		return fmt.Errorf("revoke %q: %w", name, err)
	}
	if revoked[serial] {
		return nil
	}
	// Appending (not rewriting) keeps concurrent revocations; a reader that catches half a
	// line sees a serial nobody has, and the whole line at its next look.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("revoke %q: %w", name, err)
	}
	line := fmt.Sprintf("%s # %s revoked %s\n", serial, name, time.Now().UTC().Format(time.RFC3339))
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return fmt.Errorf("revoke %q: write %s: %w", name, path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("revoke %q: sync %s: %w", name, path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("revoke %q: close %s: %w", name, path, err)
	}
	return nil
}

// ServerTLSConfig returns the server's TLS configuration: TLS 1.3 only, the server certificate
// from dir, client certificates required and verified against the CA in dir, and a
// VerifyConnection that refuses revoked serials (re-reading revoked.txt whenever it changes;
// while it is missing, unreadable or malformed, every client is refused) and certificates
// without a valid identity. It fails if the list is unusable now.
//
// It checks revocation at the handshake only; to close the sessions of clients revoked while
// connected, use ServerTLSConfigWith and give the same Revocations to the transport.
func ServerTLSConfig(dir string) (*tls.Config, error) {
	rev, err := OpenRevocations(dir, RevocationOptions{})
	if err != nil {
		return nil, fmt.Errorf("server TLS config: %w", err)
	}
	return ServerTLSConfigWith(dir, rev)
}

// ServerTLSConfigWith is ServerTLSConfig with the revocation list rev (from OpenRevocations,
// with the operator's options), which a handshake re-reads when its size or modification time
// changed, and which the caller shares with whatever re-checks live connections.
func ServerTLSConfigWith(dir string, rev *Revocations) (*tls.Config, error) {
	return ServerTLSConfigFor(dir, rev, ServerTLSOptions{})
}

// ServerTLSOptions adjust the handshake check of ServerTLSConfigFor.
type ServerTLSOptions struct {
	// DeferRevoked lets the handshake of a revoked but otherwise valid certificate (the CA's,
	// not expired, a valid client name) complete, so that the server can refuse the client's
	// first request with a reason the client reads ("certificate revoked") instead of a broken
	// connection it cannot tell from a network fault. The caller must then check every
	// connection against the same Revocations before it serves anything on it (the transport's
	// grpctransport.TLSRevocation does, for each session): without that check a revoked client
	// would be served. While the list is unusable, handshakes are refused as without it.
	DeferRevoked bool
}

// ServerTLSConfigFor is ServerTLSConfigWith with options.
func ServerTLSConfigFor(dir string, rev *Revocations, opts ServerTLSOptions) (*tls.Config, error) {
	if rev == nil {
		return nil, errors.New("server TLS config: no revocation list")
	}
	pool, err := loadPool(dir)
	if err != nil {
		return nil, fmt.Errorf("server TLS config: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, ServerFile), filepath.Join(dir, ServerKeyFile))
	if err != nil {
		return nil, fmt.Errorf("server TLS config: load server certificate: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyClient(cs, rev, opts)
		},
	}, nil
}

// ErrBadClientName is wrapped by the handshake refusal of a certificate of the CA that
// carries no valid client name (CommonName and URI SAN disagree, or neither is a valid name).
var ErrBadClientName = errors.New("client certificate has no valid client name")

// verifyClient is the handshake check after the chain was verified: the certificate carries
// a valid client name and, unless deferred, is not revoked.
func verifyClient(cs tls.ConnectionState, rev *Revocations, opts ServerTLSOptions) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("shoal: no client certificate")
	}
	leaf := cs.PeerCertificates[0]
	if _, err := certName(leaf); err != nil {
		return fmt.Errorf("shoal: %w (CN %q): %w", ErrBadClientName, leaf.Subject.CommonName, err)
	}
	rev.refreshIfTouched()
	err := rev.Check(leaf)
	if err != nil && !(opts.DeferRevoked && errors.Is(err, ErrRevoked)) {
		return fmt.Errorf("shoal: %w", err)
	}
	return nil
}

// Refusal reasons RefusalReason gives, the values of the reason label of
// shoal_refused_total for handshakes.
const (
	RefusedUnknownCA      = "unknown-ca"       // the client certificate is not from the run's CA
	RefusedNoCertificate  = "no-certificate"   // the client presented none
	RefusedRevoked        = "revoked"          // the certificate is on the revocation list
	RefusedRevocationList = "revocation-list"  // the list is unusable: every client is refused
	RefusedBadName        = "bad-name"         // a certificate of the CA without a valid client name
	RefusedExpired        = "expired"          // expired or not yet valid (check the clocks)
	RefusedBadCertificate = "bad-certificate"  // otherwise invalid: wrong key usage, unparsable
	RefusedByClient       = "client-refused"   // the client refused the server's certificate (wrong server name or CA)
	RefusedAborted        = "aborted"          // the connection ended mid-handshake (a probe, a client that gave up)
	RefusedHandshake      = "handshake-failed" // any other TLS failure (not TLS at all, version)
)

// RefusalReason classifies the error of a server's failed TLS handshake with a configuration
// of ServerTLSConfigFor: one of the Refused constants.
func RefusalReason(err error) string {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var op *net.OpError
	var verr *tls.CertificateVerificationError
	msg := err.Error()
	switch {
	case errors.Is(err, ErrRevoked):
		return RefusedRevoked
	case errors.Is(err, ErrRevocationUnusable):
		return RefusedRevocationList
	case errors.Is(err, ErrBadClientName):
		return RefusedBadName
	case errors.As(err, &unknown):
		return RefusedUnknownCA
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return RefusedExpired
	case errors.As(err, &invalid), errors.As(err, &verr), strings.Contains(msg, "failed to parse certificate"):
		return RefusedBadCertificate
	case strings.Contains(msg, "didn't provide a certificate"), strings.Contains(msg, "no client certificate"):
		return RefusedNoCertificate
	case errors.As(err, &op) && op.Op == "remote error":
		return RefusedByClient
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, os.ErrDeadlineExceeded):
		return RefusedAborted
	}
	return RefusedHandshake
}

// PresentedCertificate is the client certificate a failed handshake was refused for, when the
// error carries it (a certificate that failed verification), else nil.
func PresentedCertificate(err error) *x509.Certificate {
	var verr *tls.CertificateVerificationError
	if errors.As(err, &verr) && len(verr.UnverifiedCertificates) > 0 {
		return verr.UnverifiedCertificates[0]
	}
	return nil
}

// ClientTLSConfig returns a client's TLS configuration: TLS 1.3 only, trusting only the CA in
// dir, presenting dir/clients/NAME.pem, and expecting the server certificate to be valid for
// serverName (a DNS name or IP address; "localhost" if empty).
func ClientTLSConfig(dir, name, serverName string) (*tls.Config, error) {
	if err := ValidName(name); err != nil {
		return nil, fmt.Errorf("client TLS config: %w", err)
	}
	if serverName == "" {
		serverName = "localhost"
	}
	pool, err := loadPool(dir)
	if err != nil {
		return nil, fmt.Errorf("client TLS config: %w", err)
	}
	certPath, keyPath := clientPaths(dir, name)
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("client TLS config: load certificate of %q: %w", name, err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   serverName,
	}, nil
}

// PeerName returns the verified client identity of a connection: the NAME of the client
// certificate the server verified. It fails if the handshake is not complete, the chain was
// not verified, or the certificate's CommonName and URI SAN do not agree on a valid name.
func PeerName(cs tls.ConnectionState) (string, error) {
	if !cs.HandshakeComplete {
		return "", errors.New("peer name: TLS handshake not complete")
	}
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", errors.New("peer name: no verified client certificate")
	}
	return certName(cs.VerifiedChains[0][0])
}

// PeerIdentity returns the verified client name of a connection, as PeerName, and the serial
// number of its certificate (lowercase hex, as in revoked.txt), for the run store's client
// registry.
func PeerIdentity(cs tls.ConnectionState) (name, serial string, err error) {
	name, err = PeerName(cs)
	if err != nil {
		return "", "", err
	}
	return name, serialText(cs.VerifiedChains[0][0].SerialNumber), nil
}

// certName extracts the client identity from a client certificate.
func certName(c *x509.Certificate) (string, error) {
	var uriName string
	for _, u := range c.URIs {
		if u.Scheme != clientURIScheme || u.Host != clientURIHost {
			continue
		}
		if uriName != "" {
			return "", errors.New("client certificate has more than one shoal client URI")
		}
		uriName = strings.TrimPrefix(u.Path, "/")
		if uriName == "" {
			return "", errors.New("client certificate has an empty shoal client URI")
		}
	}
	if uriName == "" {
		return "", fmt.Errorf("certificate (CN %q) has no shoal://client/NAME URI: not a Shoal client certificate", c.Subject.CommonName)
	}
	if uriName != c.Subject.CommonName {
		return "", fmt.Errorf("client certificate names disagree: URI %q, CN %q", uriName, c.Subject.CommonName)
	}
	if err := ValidName(uriName); err != nil {
		return "", err
	}
	return uriName, nil
}

func clientURI(name string) *url.URL {
	return &url.URL{Scheme: clientURIScheme, Host: clientURIHost, Path: "/" + name}
}

func clientPaths(dir, name string) (cert, key string) {
	base := filepath.Join(dir, ClientsDir, name)
	return base + ".pem", base + "-key.pem"
}

// readRevoked reads revoked.txt; a missing file is an error (ErrNoRevocationList), as nobody
// can tell which certificates it revoked.
func readRevoked(path string) (map[string]bool, error) {
	data, err := readBounded(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, missingListError(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read revocation list: %w", err)
	}
	serials, err := parseRevoked(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return serials, nil
}

// maxSerialHexDigits bounds a serial in revoked.txt (RFC 5280: at most 20 octets).
const maxSerialHexDigits = 40

// parseRevoked parses a revocation list: one hexadecimal serial per line (an optional 0x
// prefix, any case); blank lines and text after '#' are ignored.
func parseRevoked(data []byte) (map[string]bool, error) {
	serials := map[string]bool{}
	for n, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		digits := strings.TrimPrefix(strings.ToLower(line), "0x")
		v, ok := new(big.Int).SetString(digits, 16)
		if !ok || len(digits) > maxSerialHexDigits || strings.ContainsAny(digits, "+-_") {
			return nil, fmt.Errorf("line %d: %q is not a hexadecimal serial number", n+1, line)
		}
		serials[serialText(v)] = true
	}
	return serials, nil
}

func serialText(s *big.Int) string { return s.Text(16) }

// newSerial returns a random positive 127-bit serial number (RFC 5280 allows up to 20 octets).
func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

func issueLeaf(caCert *x509.Certificate, caKey crypto.Signer, tmpl *x509.Certificate, certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-clockSkewSlack)
	tmpl.NotAfter = now.Add(leafValidity)
	if tmpl.NotAfter.After(caCert.NotAfter) {
		tmpl.NotAfter = caCert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		return fmt.Errorf("sign certificate: %w", err)
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	return writeCert(certPath, der)
}

// CheckHosts reports whether every host is an IP address or a DNS name a server certificate
// can be valid for (no ports, schemes or paths).
func CheckHosts(hosts []string) error {
	_, _, err := parseHosts(hosts)
	return err
}

func parseHosts(hosts []string) (dnsNames []string, ips []net.IP, err error) {
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
			continue
		}
		if !validDNSName(h) {
			return nil, nil, fmt.Errorf("host %q is neither an IP address nor a DNS name (no ports or schemes)", h)
		}
		dnsNames = append(dnsNames, strings.ToLower(h))
	}
	return dnsNames, ips, nil
}

// validDNSName accepts host names of letters, digits and hyphens in dot-separated labels of at
// most 63 characters, 253 in all, optionally with a leading "*." wildcard label.
func validDNSName(h string) bool {
	h = strings.TrimPrefix(h, "*.")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func loadPool(dir string) (*x509.CertPool, error) {
	ca, err := readCert(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	if !ca.IsCA {
		return nil, fmt.Errorf("load CA: %s is not a CA certificate", filepath.Join(dir, CAFile))
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, nil
}

func loadCA(dir string) (*x509.Certificate, crypto.Signer, error) {
	cert, err := readCert(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, nil, fmt.Errorf("load CA (run init first?): %w", err)
	}
	keyPath := filepath.Join(dir, CAKeyFile)
	pemData, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("load CA key: %w", err)
	}
	block, _ := pem.Decode(pemData)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, nil, fmt.Errorf("load CA key: %s holds no PEM \"PRIVATE KEY\" block", keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("load CA key %s: %w", keyPath, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("load CA key %s: unsupported key type %T", keyPath, k)
	}
	if pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(signer.Public()) {
		return nil, nil, fmt.Errorf("load CA: %s does not match the certificate in %s", keyPath, filepath.Join(dir, CAFile))
	}
	return cert, signer, nil
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s holds no PEM CERTIFICATE block", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return c, nil
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func writeCert(path string, der []byte) error {
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeFileAtomic writes data to a temporary file, syncs it and renames it over path, so a crash
// leaves either the old file or the new one, never half of one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
