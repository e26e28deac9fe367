package pki

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// handshake runs a TLS handshake between srv and cli over an in-memory pipe and returns the
// server's error.
func handshake(t *testing.T, srv, cli *tls.Config) error {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	done := make(chan error, 1)
	go func() {
		c := tls.Client(b, cli)
		err := c.Handshake()
		if err == nil {
			_, err = c.Read(make([]byte, 1)) // TLS 1.3: the server's verdict arrives after the client's Finished
		}
		b.Close()
		done <- err
	}()
	err := tls.Server(a, srv).Handshake()
	a.Close()
	<-done
	return err
}

// The dashboard opens to an operator's certificate and refuses a client's; the Federation
// service refuses an operator's: neither role stands for the other.
func TestOperatorRole(t *testing.T) {
	dir := t.TempDir()
	if err := InitCA(dir, nil, false); err != nil {
		t.Fatal(err)
	}
	if err := IssueClient(dir, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := IssueOperator(dir, "olga"); err != nil {
		t.Fatal(err)
	}
	if err := IssueOperator(dir, "olga"); err == nil {
		t.Fatal("a second operator certificate of the same name was issued over the first")
	}
	dash, err := OperatorTLSConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	op, err := OperatorTLSClientConfig(dir, "olga", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	client, err := ClientTLSConfig(dir, "alice", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, dash, op); err != nil {
		t.Fatalf("operator refused by the dashboard: %v", err)
	}
	if err := handshake(t, dash, client); !errors.Is(err, ErrNotOperator) {
		t.Fatalf("client certificate on the dashboard: %v, want ErrNotOperator", err)
	}
	fed, err := ServerTLSConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, fed, op); err == nil || RefusalReason(err) != RefusedBadName {
		t.Fatalf("operator certificate on the Federation service: %v, want refused as %s", err, RefusedBadName)
	}
	// Revoking the operator closes the dashboard to it.
	cert, err := readCert(func() string { c, _ := OperatorPaths(dir, "olga"); return c }())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, RevokedFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(Serial(cert) + " # olga\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := handshake(t, dash, op); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked operator: %v, want ErrRevoked", err)
	}
}
