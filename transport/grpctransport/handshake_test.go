package grpctransport

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"shoal/internal/testsupport"
	"shoal/pki"
)

// observedTLSServer serves over mutual TLS as the shoal server command wires it: handshakes
// observed (logged and counted by reason), one pki.Revocations for the handshake and the
// sessions, and with opts (DeferRevoked: revoked clients are refused at their Hello).
func observedTLSServer(t *testing.T, p pkiSetup, log *testsupport.Recorder, opts pki.ServerTLSOptions) (*prometheus.Registry, *testsupport.Network) {
	t.Helper()
	rev, err := pki.OpenRevocations(p.dir, pki.RevocationOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scfg, err := pki.ServerTLSConfigFor(p.dir, rev, opts)
	if err != nil {
		t.Fatal(err)
	}
	scfg.Time = func() time.Time { return p.now }
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, ServerConfig{Authenticate: TLSAuthenticator(pki.PeerName), Revocation: TLSRevocation(rev),
		Heartbeat: memHeartbeat, Logger: log.Logger(), Metrics: m})
	creds := s.ObserveHandshakes(credentials.NewTLS(scfg), pki.RefusalReason, pki.PresentedCertificate)
	nw := testsupport.NewNetwork()
	lis := nw.Listen(t, "shoal")
	testsupport.Serve(t, lis, func(l net.Listener) error { return s.Serve(l, grpc.Creds(creds)) },
		func() { s.Close(false, "test over", time.Second) })
	return reg, nw
}

// refusedCount is the value of shoal_refused_total{reason}.
func refusedCount(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "shoal_refused_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// rawHandshake dials the server with cfg, completes the client's side of the TLS handshake
// and reads until the connection fails, returning the client's error.
func rawHandshake(t *testing.T, nw *testsupport.Network, cfg *tls.Config) error {
	t.Helper()
	conn, err := nw.Dial(context.Background(), "shoal")
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(conn, cfg)
	defer tc.Close()
	if err := tc.HandshakeContext(context.Background()); err != nil {
		return err
	}
	// TLS 1.3: the server judges the client's certificate after the client's handshake is
	// done; its verdict arrives as an alert on the first read.
	_, err = tc.Read(make([]byte, 1))
	return err
}

// Item 9 of issue 13: a handshake refused for a certificate of another CA, for no
// certificate, or by a client that does not accept the server's certificate (the wrong server
// name) used to be invisible on the server. Each is now logged with its reason (and the
// presented certificate's subject) and counted in shoal_refused_total{reason}.
func TestTLSRefusalsLoggedAndCounted(t *testing.T) {
	p := newPKI(t, "alice")
	other := newPKI(t, "eve") // another CA
	synctest.Test(t, func(t *testing.T) {
		rec := testsupport.NewRecorder(t)
		reg, nw := observedTLSServer(t, p, rec, pki.ServerTLSOptions{DeferRevoked: true})

		eve := other.clientTLS(t, "eve")
		eve.RootCAs = p.clientTLS(t, "alice").RootCAs // eve trusts the server; the server does not trust eve's CA
		if err := rawHandshake(t, nw, eve); err == nil {
			t.Fatal("a client of another CA got through")
		}
		got := rec.WaitFor(t, "of the unknown CA", testsupport.Message("TLS handshake refused", "reason", pki.RefusedUnknownCA))
		if got.Attrs["subject"] != "eve" || !strings.Contains(got.Attrs["err"], "unknown authority") {
			t.Fatalf("log of the unknown CA: %v", got)
		}

		noCert := p.clientTLS(t, "alice")
		noCert.Certificates = nil
		if err := rawHandshake(t, nw, noCert); err == nil {
			t.Fatal("a client without a certificate got through")
		}
		rec.WaitFor(t, "of no certificate", testsupport.Message("TLS handshake refused", "reason", pki.RefusedNoCertificate))

		wrongName := p.clientTLS(t, "alice")
		wrongName.ServerName = "not-the-server.example"
		if err := rawHandshake(t, nw, wrongName); err == nil || !strings.Contains(err.Error(), "not-the-server.example") {
			t.Fatalf("client with the wrong server name: %v", err)
		}
		rec.WaitFor(t, "of the client's refusal", testsupport.Message("TLS handshake refused", "reason", pki.RefusedByClient))

		for _, reason := range []string{pki.RefusedUnknownCA, pki.RefusedNoCertificate, pki.RefusedByClient} {
			if n := refusedCount(t, reg, reason); n != 1 {
				t.Errorf("shoal_refused_total{reason=%q} = %v, want 1", reason, n)
			}
		}
		// A valid client's handshake is accepted (the server's HTTP/2 settings arrive) and not
		// counted.
		alice := p.clientTLS(t, "alice")
		alice.NextProtos = []string{"h2"}
		if err := rawHandshake(t, nw, alice); err != nil {
			t.Fatalf("valid client: %v", err)
		}
		if n := refusedCount(t, reg, pki.RefusedHandshake) + refusedCount(t, reg, pki.RefusedAborted); n != 0 {
			t.Fatalf("a valid handshake counted as refused (%v)", n)
		}
	})
}

// A revoked client is told why: its handshake completes and its Hello is refused with
// PermissionDenied "certificate revoked", so the client runtime gives up with an error that
// says so; it never gets a session, and the refusal is logged and counted as "revoked".
func TestRevokedClientToldItIsRevoked(t *testing.T) {
	p := newPKI(t, "alice", "mallory")
	if err := pki.Revoke(p.dir, "mallory"); err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		rec := testsupport.NewRecorder(t)
		reg, nw := observedTLSServer(t, p, rec, pki.ServerTLSOptions{DeferRevoked: true})
		mallory := startTLSClient(t, p, nw, "mallory", trainers)
		err := mallory.Wait(t, "the revoked client's exit")
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), codes.PermissionDenied.String()) {
			t.Fatalf("revoked client: %v, want refused with PermissionDenied", err)
		}
		if !strings.Contains(err.Error(), "certificate revoked") {
			t.Fatalf("revoked client's error does not say it is revoked: %v", err)
		}
		rec.WaitFor(t, "of the revoked client", testsupport.Message("client refused", "client", "mallory"))
		if n := refusedCount(t, reg, "revoked"); n != 1 {
			t.Fatalf("shoal_refused_total{reason=\"revoked\"} = %v, want 1", n)
		}
		if n := refusedCount(t, reg, "not-admitted") + refusedCount(t, reg, pki.RefusedHandshake); n != 0 {
			t.Fatalf("unexpected refusals: %v", n)
		}
	})
}

// Without DeferRevoked (pki.ServerTLSConfigWith), the revoked certificate is refused at the
// handshake, and that refusal is logged and counted as "revoked" too.
func TestRevokedRefusedAtHandshakeCounted(t *testing.T) {
	p := newPKI(t, "mallory")
	if err := pki.Revoke(p.dir, "mallory"); err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		rec := testsupport.NewRecorder(t)
		reg, nw := observedTLSServer(t, p, rec, pki.ServerTLSOptions{})
		if err := rawHandshake(t, nw, p.clientTLS(t, "mallory")); err == nil {
			t.Fatal("a revoked client's handshake got through")
		}
		got := rec.WaitFor(t, "of the revoked certificate", testsupport.Message("TLS handshake refused", "reason", pki.RefusedRevoked))
		if !strings.Contains(got.Attrs["err"], "certificate revoked") {
			t.Fatalf("log: %v", got)
		}
		if n := refusedCount(t, reg, pki.RefusedRevoked); n != 1 {
			t.Fatalf("shoal_refused_total{reason=\"revoked\"} = %v, want 1", n)
		}
	})
}
