package grpctransport

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"

	"google.golang.org/grpc/credentials"
)

// ObserveHandshakes wraps the server's transport credentials (credentials.NewTLS of the
// server's TLS configuration) so that every failed handshake — a certificate of another CA, a
// revoked one, none at all — is logged with its reason and counted in
// shoal_refused_total{reason}: gRPC itself only drops such a connection. reason classifies a
// handshake error (for example pki.RefusalReason); presented, if set, returns the client
// certificate the error carries (pki.PresentedCertificate), for the log.
func (s *Server) ObserveHandshakes(creds credentials.TransportCredentials, reason func(error) string,
	presented func(error) *x509.Certificate) credentials.TransportCredentials {
	return observedCreds{TransportCredentials: creds, s: s, reason: reason, presented: presented}
}

type observedCreds struct {
	credentials.TransportCredentials
	s         *Server
	reason    func(error) string
	presented func(error) *x509.Certificate
}

func (c observedCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	addr := raw.RemoteAddr()
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		c.s.handshakeFailed(addr, c.reason(err), c.presented, err)
	}
	return conn, info, err
}

func (c observedCreds) Clone() credentials.TransportCredentials {
	return observedCreds{TransportCredentials: c.TransportCredentials.Clone(), s: c.s, reason: c.reason, presented: c.presented}
}

// abortedHandshake is the reason the log keeps at debug level: a connection closed mid-handshake
// is a port probe or a client that gave up, not a refusal worth a warning.
const abortedHandshake = "aborted"

// handshakeFailed logs and counts a refused handshake.
func (s *Server) handshakeFailed(addr net.Addr, reason string, presented func(error) *x509.Certificate, err error) {
	s.cfg.Metrics.refuse(reason)
	attrs := []any{"reason", reason, "remote", fmt.Sprint(addr), "err", err}
	if presented != nil {
		if cert := presented(err); cert != nil {
			attrs = append(attrs, "subject", cert.Subject.CommonName, "issuer", cert.Issuer.CommonName,
				"serial", cert.SerialNumber.Text(16))
		}
	}
	level := slog.LevelWarn
	if reason == abortedHandshake {
		level = slog.LevelDebug
	}
	s.log.Log(context.Background(), level, "TLS handshake refused", attrs...)
}
