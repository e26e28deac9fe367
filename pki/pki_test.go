package pki

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// handshakeResult is what the server side of one test connection saw.
type handshakeResult struct {
	name string
	err  error
}

// tlsServer accepts TLS connections on 127.0.0.1 with cfg; for each it completes the handshake,
// reports PeerName (or the error) and, on success, writes "ok\n" so the client can tell.
func tlsServer(t *testing.T, cfg *tls.Config) (addr string, results <-chan handshakeResult) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan handshakeResult, 16)
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer raw.Close()
				c := tls.Server(raw, cfg)
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if err := c.Handshake(); err != nil {
					ch <- handshakeResult{err: err}
					return
				}
				name, err := PeerName(c.ConnectionState())
				ch <- handshakeResult{name: name, err: err}
				if err == nil {
					io.WriteString(c, "ok\n")
				}
			}()
		}
	}()
	return ln.Addr().String(), ch
}

// dial connects with cfg and returns nil only if the server accepted the client (in TLS 1.3
// the client learns of a refusal of its certificate on its first read).
func dial(addr string, cfg *tls.Config) error {
	_, err := dialState(addr, cfg)
	return err
}

func dialState(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 3)
	if _, err := io.ReadFull(c, buf); err != nil {
		return tls.ConnectionState{}, err
	}
	if string(buf) != "ok\n" {
		return tls.ConnectionState{}, errors.New("unexpected reply " + string(buf))
	}
	return c.ConnectionState(), nil
}

func wait(t *testing.T, ch <-chan handshakeResult) handshakeResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("server saw no handshake")
		return handshakeResult{}
	}
}

// expectAccepted dials and checks both sides agree that the client is in, under want.
func expectAccepted(t *testing.T, addr string, ch <-chan handshakeResult, cfg *tls.Config, want string) {
	t.Helper()
	if err := dial(addr, cfg); err != nil {
		t.Fatalf("client %q refused: %v", want, err)
	}
	r := wait(t, ch)
	if r.err != nil || r.name != want {
		t.Fatalf("server: name %q err %v, want %q", r.name, r.err, want)
	}
}

// expectRefused dials and checks both sides fail; the server's error must mention wantErr.
func expectRefused(t *testing.T, addr string, ch <-chan handshakeResult, cfg *tls.Config, wantErr string) {
	t.Helper()
	if err := dial(addr, cfg); err == nil {
		t.Fatal("client was accepted, want refused")
	}
	r := wait(t, ch)
	if r.err == nil {
		t.Fatalf("server accepted the client as %q", r.name)
	}
	if !strings.Contains(r.err.Error(), wantErr) {
		t.Fatalf("server error %q does not mention %q", r.err, wantErr)
	}
}

func newCA(t *testing.T, hosts ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if err := InitCA(dir, hosts, false); err != nil {
		t.Fatal(err)
	}
	return dir
}

func mustClient(t *testing.T, dir, name, serverName string) *tls.Config {
	t.Helper()
	if err := IssueClient(dir, name); err != nil {
		t.Fatal(err)
	}
	cfg, err := ClientTLSConfig(dir, name, serverName)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestMutualTLS(t *testing.T) {
	dir := newCA(t)
	scfg, err := ServerTLSConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	addr, ch := tlsServer(t, scfg)
	alice := mustClient(t, dir, "alice", "127.0.0.1")
	bob := mustClient(t, dir, "bob.2_x-y", "localhost")

	t.Run("good clients accepted under their names", func(t *testing.T) {
		expectAccepted(t, addr, ch, alice, "alice")
		expectAccepted(t, addr, ch, bob, "bob.2_x-y")
	})

	t.Run("no client certificate", func(t *testing.T) {
		cfg := alice.Clone()
		cfg.Certificates = nil
		expectRefused(t, addr, ch, cfg, "certificate")
	})

	t.Run("client certificate from another CA", func(t *testing.T) {
		other := newCA(t)
		cfg := mustClient(t, other, "alice", "localhost")
		cfg.RootCAs = alice.RootCAs // it trusts our server; the server must not trust it
		expectRefused(t, addr, ch, cfg, "unknown authority")
	})

	t.Run("TLS 1.2 refused", func(t *testing.T) {
		cfg := alice.Clone()
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		expectRefused(t, addr, ch, cfg, "version")
	})

	t.Run("revoked client refused, others still accepted", func(t *testing.T) {
		carol := mustClient(t, dir, "carol", "localhost")
		// With a session cache, the reconnection after revocation tries to resume: a session
		// ticket must not outlive the certificate it was issued for.
		carol.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		expectAccepted(t, addr, ch, carol, "carol")
		if cs, err := dialState(addr, carol); err != nil || !cs.DidResume {
			t.Fatalf("second connection: resumed %v, %v", cs.DidResume, err)
		}
		if r := wait(t, ch); r.err != nil || r.name != "carol" {
			t.Fatalf("resumed connection: %q %v", r.name, r.err)
		}
		if err := Revoke(dir, "carol"); err != nil {
			t.Fatal(err)
		}
		if err := Revoke(dir, "carol"); err != nil {
			t.Fatalf("second revoke: %v", err)
		}
		expectRefused(t, addr, ch, carol, "revoked")
		expectAccepted(t, addr, ch, alice, "alice")
		// A new certificate for the same name, after revocation, is accepted.
		if err := IssueClient(dir, "carol"); err != nil {
			t.Fatalf("reissue after revoke: %v", err)
		}
		carol2, err := ClientTLSConfig(dir, "carol", "localhost")
		if err != nil {
			t.Fatal(err)
		}
		expectAccepted(t, addr, ch, carol2, "carol")
		expectRefused(t, addr, ch, carol, "revoked") // the old key stays out
	})

	t.Run("client refuses a server from another CA", func(t *testing.T) {
		other := newCA(t)
		ocfg, err := ServerTLSConfig(other)
		if err != nil {
			t.Fatal(err)
		}
		oaddr, och := tlsServer(t, ocfg)
		if err := dial(oaddr, alice); err == nil || !strings.Contains(err.Error(), "unknown authority") {
			t.Fatalf("dial to foreign server: %v, want unknown authority", err)
		}
		wait(t, och)
	})

	t.Run("client refuses a server certificate for another host", func(t *testing.T) {
		cfg := alice.Clone()
		cfg.ServerName = "shoal.example.org"
		if err := dial(addr, cfg); err == nil || !strings.Contains(err.Error(), "shoal.example.org") {
			t.Fatalf("dial with wrong server name: %v", err)
		}
		wait(t, ch)
	})

	t.Run("a client certificate cannot serve", func(t *testing.T) {
		// A client's certificate lacks the server-auth usage: it cannot impersonate the server.
		fake := scfg.Clone()
		fake.Certificates = alice.Certificates
		faddr, fch := tlsServer(t, fake)
		if err := dial(faddr, alice); err == nil {
			t.Fatal("client accepted a server presenting a client certificate")
		}
		wait(t, fch)
	})
}

// TestForgedIdentity: certificates signed by the right CA but whose identity is ambiguous or
// missing are refused by the server, so a client cannot speak for another.
func TestForgedIdentity(t *testing.T) {
	dir := newCA(t)
	scfg, err := ServerTLSConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	addr, ch := tlsServer(t, scfg)
	caCert, caKey, err := loadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	good := mustClient(t, dir, "alice", "localhost")
	for _, tc := range []struct {
		label, cn string
		uris      []*url.URL
		wantErr   string
	}{
		{"CN and URI disagree", "alice", []*url.URL{clientURI("bob")}, "disagree"},
		{"no URI", "alice", nil, "no shoal://client/NAME URI"},
		{"two URIs", "alice", []*url.URL{clientURI("alice"), clientURI("bob")}, "more than one"},
		{"invalid name", "../x", []*url.URL{clientURI("../x")}, "invalid client name"},
	} {
		t.Run(tc.label, func(t *testing.T) {
			tmpl := &x509.Certificate{
				Subject:     pkix.Name{CommonName: tc.cn},
				KeyUsage:    x509.KeyUsageDigitalSignature,
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
				URIs:        tc.uris,
			}
			d := t.TempDir()
			if err := issueLeaf(caCert, caKey, tmpl, filepath.Join(d, "c.pem"), filepath.Join(d, "k.pem")); err != nil {
				t.Fatal(err)
			}
			cert, err := tls.LoadX509KeyPair(filepath.Join(d, "c.pem"), filepath.Join(d, "k.pem"))
			if err != nil {
				t.Fatal(err)
			}
			cfg := good.Clone()
			cfg.Certificates = []tls.Certificate{cert}
			expectRefused(t, addr, ch, cfg, tc.wantErr)
		})
	}
}

func TestPeerNameUnverified(t *testing.T) {
	if _, err := PeerName(tls.ConnectionState{}); err == nil {
		t.Fatal("PeerName of an incomplete handshake succeeded")
	}
	dir := newCA(t)
	mustClient(t, dir, "alice", "")
	cert, err := readCert(filepath.Join(dir, ClientsDir, "alice.pem"))
	if err != nil {
		t.Fatal(err)
	}
	// Presented but not verified (as on a server without client verification): no identity.
	cs := tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{cert}}
	if _, err := PeerName(cs); err == nil {
		t.Fatal("PeerName trusted an unverified certificate")
	}
	cs.VerifiedChains = [][]*x509.Certificate{{cert}}
	if name, err := PeerName(cs); err != nil || name != "alice" {
		t.Fatalf("PeerName = %q, %v", name, err)
	}
	want, err := ClientSerial(dir, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if name, serial, err := PeerIdentity(cs); err != nil || name != "alice" || serial != want || serial != Serial(cert) {
		t.Fatalf("PeerIdentity = %q %q %v, want serial %s", name, serial, err, want)
	}
}

func TestBadNames(t *testing.T) {
	dir := newCA(t)
	for _, name := range []string{"", ".", "..", "../evil", "a/b", "a b", "é", "x\n", strings.Repeat("a", 65), "a\x00"} {
		if err := IssueClient(dir, name); err == nil {
			t.Errorf("IssueClient(%q) succeeded", name)
		}
		if _, err := ClientTLSConfig(dir, name, ""); err == nil {
			t.Errorf("ClientTLSConfig(%q) succeeded", name)
		}
		if err := Revoke(dir, name); err == nil {
			t.Errorf("Revoke(%q) succeeded", name)
		}
	}
	entries, err := os.ReadDir(filepath.Join(dir, ClientsDir))
	if err == nil && len(entries) > 0 {
		t.Fatalf("bad names left files: %v", entries)
	}
	if err := IssueClient(dir, strings.Repeat("a", 64)); err != nil {
		t.Fatalf("64-character name refused: %v", err)
	}
	if err := Revoke(dir, "nobody"); err == nil {
		t.Fatal("revoking an unknown client succeeded")
	}
}

func TestInitCA(t *testing.T) {
	dir := newCA(t)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v, want 0700", fi.Mode().Perm())
	}
	if err := IssueClient(dir, "alice"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{CAKeyFile, ServerKeyFile, filepath.Join(ClientsDir, "alice-key.pem")} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	// Default hosts are in the server certificate.
	srv, err := readCert(filepath.Join(dir, ServerFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range DefaultHosts {
		if err := srv.VerifyHostname(h); err != nil {
			t.Errorf("server certificate not valid for %s: %v", h, err)
		}
	}

	if err := IssueClient(dir, "alice"); err == nil || !strings.Contains(err.Error(), "revoke it first") {
		t.Fatalf("second IssueClient for a valid name: %v", err)
	}
	oldCA, _ := os.ReadFile(filepath.Join(dir, CAFile))
	if err := InitCA(dir, nil, false); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("InitCA over an existing CA: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, CAFile)); string(b) != string(oldCA) {
		t.Fatal("refused InitCA changed ca.pem")
	}
	if err := InitCA(dir, []string{"shoal.example.org", "10.1.2.3"}, true); err != nil {
		t.Fatalf("forced InitCA: %v", err)
	}
	// The old client certificate no longer verifies; a new one may be issued without revoking.
	scfg, err := ServerTLSConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	addr, ch := tlsServer(t, scfg)
	stale, err := ClientTLSConfig(dir, "alice", "shoal.example.org")
	if err != nil {
		t.Fatal(err)
	}
	expectRefused(t, addr, ch, stale, "unknown authority")
	fresh := mustClient(t, dir, "alice", "10.1.2.3")
	expectAccepted(t, addr, ch, fresh, "alice")

	for _, hosts := range [][]string{{"https://x"}, {"host:443"}, {""}, {"a b"}, {"-bad.example"}} {
		if err := InitCA(filepath.Join(t.TempDir(), "c"), hosts, false); err == nil {
			t.Errorf("InitCA accepted hosts %q", hosts)
		}
	}
	if err := IssueClient(t.TempDir(), "alice"); err == nil || !strings.Contains(err.Error(), "run init first") {
		t.Fatalf("IssueClient without a CA: %v", err)
	}
	if _, err := ServerTLSConfig(t.TempDir()); err == nil {
		t.Fatal("ServerTLSConfig without a CA succeeded")
	}
}

func TestIssueServerAndRevocationFile(t *testing.T) {
	dir := newCA(t)
	if err := IssueServer(dir, []string{"fl.example.net"}); err != nil {
		t.Fatal(err)
	}
	scfg, err := ServerTLSConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	addr, ch := tlsServer(t, scfg)
	alice := mustClient(t, dir, "alice", "fl.example.net")
	expectAccepted(t, addr, ch, alice, "alice")

	// An operator's hand-edited list (comments, 0x prefix, upper case) is understood.
	serial, err := ClientSerial(dir, "alice")
	if err != nil {
		t.Fatal(err)
	}
	content := "# revoked by hand\n\n0x" + strings.ToUpper(serial) + "   # alice\n"
	if err := os.WriteFile(filepath.Join(dir, RevokedFile), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	expectRefused(t, addr, ch, alice, "revoked")

	// An unreadable list refuses everyone rather than letting revoked clients in.
	if err := os.WriteFile(filepath.Join(dir, RevokedFile), []byte("not-hex\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bob := mustClient(t, dir, "bob", "fl.example.net")
	expectRefused(t, addr, ch, bob, "revocation list")
	if _, err := ServerTLSConfig(dir); err == nil {
		t.Fatal("ServerTLSConfig accepted a malformed revocation list")
	}
	// Mended (alice's revocation undone by hand), the list lets alice in again.
	if err := os.WriteFile(filepath.Join(dir, RevokedFile), []byte("# nobody\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	expectAccepted(t, addr, ch, alice, "alice")
}

func TestListClients(t *testing.T) {
	dir := newCA(t)
	if got, err := ListClients(dir); err != nil || len(got) != 0 {
		t.Fatalf("ListClients of a new CA: %v %v", got, err)
	}
	for _, n := range []string{"carol", "alice", "bob-key2"} {
		if err := IssueClient(dir, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := Revoke(dir, "carol"); err != nil {
		t.Fatal(err)
	}
	got, err := ListClients(dir)
	if err != nil || len(got) != 3 {
		t.Fatalf("ListClients: %+v %v", got, err)
	}
	if got[0].Name != "alice" || got[1].Name != "bob-key2" || got[2].Name != "carol" {
		t.Fatalf("order: %+v", got)
	}
	if !got[0].Valid || got[0].Revoked || !got[2].Revoked || got[2].Valid {
		t.Fatalf("states: %+v", got)
	}
	if s, _ := ClientSerial(dir, "alice"); got[0].Serial != s {
		t.Fatalf("serial %s, want %s", got[0].Serial, s)
	}
	// After a forced re-init, old certificates are listed as invalid.
	if err := InitCA(dir, nil, true); err != nil {
		t.Fatal(err)
	}
	got, _ = ListClients(dir)
	if got[0].Valid {
		t.Fatal("certificate of the replaced CA listed as valid")
	}
}
