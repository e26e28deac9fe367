package grpctransport

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"shoal/fl"
	"shoal/internal/testsupport"
	"shoal/pki"
)

// tlsServerAt serves over mutual TLS on host (a loopback address), presenting the server
// certificate of dir.
func tlsServerAt(t *testing.T, dir, host string) (*Server, string) {
	t.Helper()
	scfg, err := pki.ServerTLSConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, ServerConfig{Authenticate: TLSAuthenticator(pki.PeerName), Heartbeat: time.Hour})
	lis, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	testsupport.Serve(t, lis, func(l net.Listener) error { return s.Serve(l, grpc.Creds(credentials.NewTLS(scfg))) },
		func() { s.Close(false, "test over", time.Second) })
	return s, lis.Addr().String()
}

// Attack: a device given a list of servers (a tier's edges) verified every one against the
// first one's host name, so a server presenting the certificate of another host (an edge's key
// used elsewhere) was accepted, and an edge with a certificate for its own host was refused.
// Here B (127.0.0.2) presents the certificate of 127.0.0.1 and C (127.0.0.3) its own: every
// device joins C, none B.
func TestAttackServerListCertificateOfAnotherHost(t *testing.T) {
	const devices = 6
	dirA := filepath.Join(t.TempDir(), "a")
	if err := pki.InitCA(dirA, []string{"127.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	for i := range devices {
		if err := pki.IssueClient(dirA, fmt.Sprintf("roamer%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	dirC := filepath.Join(t.TempDir(), "c")
	if err := os.CopyFS(dirC, os.DirFS(dirA)); err != nil {
		t.Fatal(err)
	}
	if err := pki.IssueServer(dirC, []string{"127.0.0.3"}); err != nil {
		t.Fatal(err)
	}
	b, addrB := tlsServerAt(t, dirA, "127.0.0.2") // 127.0.0.1's certificate on another host
	c, addrC := tlsServerAt(t, dirC, "127.0.0.3")
	for i := range devices {
		cfg, err := pki.ClientTLSConfig(dirA, fmt.Sprintf("roamer%d", i), "")
		if err != nil {
			t.Fatal(err)
		}
		cfg.ServerName = "" // what `shoal client --server B,C` passes: each server by its own host
		testsupport.Go(t, func(ctx context.Context) error {
			return RunClient(ctx, ClientConfig{Server: addrB + "," + addrC, TLS: cfg,
				Local:      func(int, fl.ClientID) (fl.Client, error) { return &testsupport.Trainer{N: 1}, nil },
				MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
		})
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(c.Connected()) != devices {
		if len(b.Connected()) != 0 {
			t.Fatal("a device accepted a certificate for 127.0.0.1 from 127.0.0.2")
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d devices joined C, whose certificate names its host", len(c.Connected()), devices)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if len(b.Connected()) != 0 {
		t.Fatal("a device accepted a certificate for 127.0.0.1 from 127.0.0.2")
	}
}
