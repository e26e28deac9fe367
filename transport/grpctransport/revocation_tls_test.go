package grpctransport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"shoal/fl"
	"shoal/internal/testsupport"
	"shoal/pki"
	shoalv1 "shoal/proto/shoal/v1"
)

// End to end with real certificates, a real revocation list on disk and real TLS 1.3
// handshakes, on the in-memory network inside a synctest bubble: the heartbeat that notices a
// change runs on the fake clock. The certificates are made outside the bubble, whose clock
// starts in 2000; both sides verify them at the real time of the test's start.

// pkiSetup is a certificate directory with one certificate per client name.
type pkiSetup struct {
	dir string
	now time.Time // the real time, for certificate validity inside the bubble
}

func newPKI(t *testing.T, names ...string) pkiSetup {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if err := pki.InitCA(dir, nil, false); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := pki.IssueClient(dir, n); err != nil {
			t.Fatal(err)
		}
	}
	return pkiSetup{dir: dir, now: time.Now()}
}

// tlsMemServer serves over mutual TLS as the shoal server command wires it: one
// pki.Revocations for the handshake and for the sessions' heartbeat checks.
func tlsMemServer(t *testing.T, p pkiSetup, log *testsupport.Recorder) (*Server, *testsupport.Network) {
	t.Helper()
	rev, err := pki.OpenRevocations(p.dir, pki.RevocationOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scfg, err := pki.ServerTLSConfigWith(p.dir, rev)
	if err != nil {
		t.Fatal(err)
	}
	scfg.Time = func() time.Time { return p.now }
	s := newTestServer(t, ServerConfig{Authenticate: TLSAuthenticator(pki.PeerName), Revocation: TLSRevocation(rev),
		Heartbeat: memHeartbeat, Logger: log.Logger()})
	nw := testsupport.NewNetwork()
	lis := nw.Listen(t, "shoal")
	testsupport.Serve(t, lis, func(l net.Listener) error { return s.Serve(l, grpc.Creds(credentials.NewTLS(scfg))) },
		func() { s.Close(false, "test over", time.Second) })
	return s, nw
}

func (p pkiSetup) clientTLS(t *testing.T, name string) *tls.Config {
	t.Helper()
	cfg, err := pki.ClientTLSConfig(p.dir, name, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Time = func() time.Time { return p.now }
	return cfg
}

func startTLSClient(t *testing.T, p pkiSetup, nw *testsupport.Network, name string, local func(int, fl.ClientID) (fl.Client, error)) *testsupport.Proc {
	t.Helper()
	cfg := p.clientTLS(t, name)
	return testsupport.Go(t, func(ctx context.Context) error {
		return RunClient(ctx, ClientConfig{Server: testsupport.Target("shoal"), TLS: cfg, Local: local,
			MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, DialOptions: []grpc.DialOption{nw.Dialer()}})
	})
}

// Attack, over real TLS: `shoal certs revoke` while the client is connected used to change
// nothing until it reconnected. Now its session ends within one heartbeat of the file's
// change, mid-fit, and it is refused from then on; the other client's update is aggregated.
func TestAttackRevokedClientKeepsSessionOverTLS(t *testing.T) {
	p := newPKI(t, "alice", "mallory")
	synctest.Test(t, func(t *testing.T) {
		s, nw := tlsMemServer(t, p, testsupport.NewRecorder(t))
		started := make(chan fl.ClientID, 4)
		startTLSClient(t, p, nw, "alice", trainers)
		mallory := startTLSClient(t, p, nw, "mallory", testsupport.Trainers(1, blocked(make(chan struct{})), func(c *testsupport.Trainer) { c.Started = started }))
		testsupport.WaitClients(t, s, 2)

		r := roundWithActMidFit(t, s, started, func() {
			if err := pki.Revoke(p.dir, "mallory"); err != nil {
				t.Error(err)
			}
		})
		if r.err != nil || r.rep.Participants != 1 || r.rep.Dropped != 1 {
			t.Fatalf("round: %+v %v", r.rep, r.err)
		}
		if r.sinceAct > memHeartbeat {
			t.Fatalf("the revoked client's session lasted %v after the revocation, want at most one heartbeat (%v)", r.sinceAct, memHeartbeat)
		}
		// Roster: alice 0, mallory 1.
		if err := r.fitErrs[1]; !errors.Is(err, fl.ErrDropped) || errors.Is(err, fl.ErrTimeout) {
			t.Fatalf("the revoked client's fit: %v, want dropped", err)
		}
		testsupport.CloseTo(t, r.global, testsupport.FedAvg(make([]float32, 10), 1, map[fl.ClientID]int{0: 1}), 1e-6)
		if err := mallory.Wait(t, "the revoked client's exit"); !errors.Is(err, ErrRefused) {
			t.Fatalf("revoked client: %v, want refused for good", err)
		}
		if got := fmt.Sprint(s.Connected()); got != "[alice]" {
			t.Fatalf("connected: %s", got)
		}
	})
}

// Attack: a revoked client whose TLS connection stays up opens a new session on it — no new
// handshake, so the handshake's revocation check never runs. Now its open session is closed
// within one heartbeat, and a new stream on the same connection is refused.
func TestAttackRevokedClientReusesConnectionOverTLS(t *testing.T) {
	p := newPKI(t, "mallory")
	synctest.Test(t, func(t *testing.T) {
		s, nw := tlsMemServer(t, p, testsupport.NewRecorder(t))
		conn, err := grpc.NewClient(testsupport.Target("shoal"), nw.Dialer(),
			grpc.WithTransportCredentials(credentials.NewTLS(p.clientTLS(t, "mallory"))))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		api := shoalv1.NewFederationClient(conn)
		// session opens a stream, says hello and returns the stream once welcomed, or the
		// error that ended it.
		session := func() (grpc.BidiStreamingClient[shoalv1.ClientMsg, shoalv1.ServerMsg], error) {
			stream, err := api.Connect(context.Background())
			if err != nil {
				return nil, err
			}
			if err := stream.Send(&shoalv1.ClientMsg{Body: &shoalv1.ClientMsg_Hello{Hello: &shoalv1.Hello{ProtocolVersion: ProtocolVersion}}}); err != nil {
				return nil, err
			}
			m, err := stream.Recv()
			if err != nil {
				return nil, err
			}
			if m.GetWelcome() == nil {
				return nil, fmt.Errorf("first message %v, want a welcome", m)
			}
			return stream, nil
		}
		first, err := session()
		if err != nil {
			t.Fatalf("mallory before revocation: %v", err)
		}
		revoked := time.Now()
		if err := pki.Revoke(p.dir, "mallory"); err != nil {
			t.Fatal(err)
		}
		for {
			// Answer heartbeats, as a live client does, until the session ends.
			m, err := first.Recv()
			if err == nil {
				if el := time.Since(revoked); el > 10*memHeartbeat {
					t.Fatalf("mallory's session still open %v after the revocation", el)
				}
				if hb := m.GetHeartbeat(); hb != nil {
					_ = first.Send(&shoalv1.ClientMsg{Body: &shoalv1.ClientMsg_Heartbeat{Heartbeat: &shoalv1.Heartbeat{Seq: hb.GetSeq()}}})
				}
				continue
			}
			if status.Code(err) != codes.PermissionDenied {
				t.Fatalf("mallory's open session ended with %v, want PermissionDenied", err)
			}
			break
		}
		if el := time.Since(revoked); el > memHeartbeat {
			t.Fatalf("open session lasted %v after the revocation, want at most %v", el, memHeartbeat)
		}
		// The same connection, a new stream: refused.
		if _, err := session(); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("new session on mallory's open connection: %v, want PermissionDenied", err)
		}
		if got := s.Connected(); len(got) != 0 {
			t.Fatalf("connected: %v", got)
		}
	})
}

// Attack: delete revoked.txt on the server machine and the revoked are back. Now the
// connected clients' sessions are closed within one heartbeat of the deletion (their
// in-flight tasks dropped), and handshakes are refused, the revoked client's included.
func TestAttackDeletedRevocationListOverTLS(t *testing.T) {
	p := newPKI(t, "alice", "bob", "mallory")
	if err := pki.Revoke(p.dir, "mallory"); err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		rec := testsupport.NewRecorder(t)
		s, nw := tlsMemServer(t, p, rec)
		started := make(chan fl.ClientID, 4)
		startTLSClient(t, p, nw, "alice", testsupport.Trainers(1, blocked(make(chan struct{})), func(c *testsupport.Trainer) { c.Started = started }))
		startTLSClient(t, p, nw, "bob", trainers)
		testsupport.WaitClients(t, s, 2)

		r := roundWithActMidFit(t, s, started, func() {
			if err := os.Remove(filepath.Join(p.dir, pki.RevokedFile)); err != nil {
				t.Error(err)
			}
		})
		if r.sinceAct > memHeartbeat {
			t.Fatalf("sessions lasted %v after the list was deleted, want at most one heartbeat (%v)", r.sinceAct, memHeartbeat)
		}
		if err := r.fitErrs[0]; !errors.Is(err, fl.ErrDropped) || errors.Is(err, fl.ErrTimeout) {
			t.Fatalf("alice's in-flight fit: %v, want dropped", err)
		}
		rec.WaitFor(t, "of the unusable list", testsupport.Message("revocation list unusable: closing every session and refusing every client until it is mended"))
		mallory := startTLSClient(t, p, nw, "mallory", trainers)
		if err := mallory.Wait(t, "mallory's exit"); !errors.Is(err, ErrRefused) {
			t.Fatalf("revoked client with the list deleted: %v, want refused", err)
		}
		if got := s.Connected(); len(got) != 0 {
			t.Fatalf("connected with the revocation list deleted: %v", got)
		}
		if _, err := pki.ServerTLSConfig(p.dir); !errors.Is(err, pki.ErrNoRevocationList) || !strings.Contains(err.Error(), "revocation list missing") {
			t.Fatalf("a server starting without the list: %v", err)
		}
	})
}

// Attack: mallory, with her own valid certificate, says hello as alice, to take alice's place
// in the roster (and replace alice's session). The name comes from the certificate; a Hello
// that names someone else is refused for good, and alice keeps her session.
func TestAttackClientClaimsAnotherName(t *testing.T) {
	p := newPKI(t, "alice", "mallory")
	synctest.Test(t, func(t *testing.T) {
		s, nw := tlsMemServer(t, p, testsupport.NewRecorder(t))
		startTLSClient(t, p, nw, "alice", trainers)
		testsupport.WaitClients(t, s, 1)
		cfg := p.clientTLS(t, "mallory")
		mallory := testsupport.Go(t, func(ctx context.Context) error {
			return RunClient(ctx, ClientConfig{Server: testsupport.Target("shoal"), Name: "alice", TLS: cfg, Local: trainers,
				MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, DialOptions: []grpc.DialOption{nw.Dialer()}})
		})
		if err := mallory.Wait(t, "the impostor's exit"); !errors.Is(err, ErrRefused) {
			t.Fatalf("impostor: %v, want refused for good", err)
		}
		if got := fmt.Sprint(s.Connected()); got != "[alice]" {
			t.Fatalf("connected: %s, want alice's own session only", got)
		}
	})
}
