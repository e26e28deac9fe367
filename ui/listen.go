package ui

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"shoal/pki"
)

// DefaultAddr is where the dashboard listens unless told otherwise: loopback only.
const DefaultAddr = "127.0.0.1:8080"

// ErrNeedsOperatorTLS is returned by Listen for a non-loopback address without a certificate
// directory.
var ErrNeedsOperatorTLS = errors.New("a dashboard on a non-loopback address is served only over TLS to operator certificates")

// Server is a dashboard being served.
type Server struct {
	hs  *http.Server
	lis net.Listener
	// URL is where it is served (https when TLS).
	URL string
	// TLS says whether it requires operator certificates.
	TLS bool
}

// Loopback reports whether addr (host:port) listens on loopback interfaces only: an empty
// host (every interface) is not, and a name is only if every address it resolves to is.
func Loopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("dashboard address %q: %w", addr, err)
	}
	if host == "" {
		return false, nil
	}
	if host == "localhost" {
		return true, nil
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback(), nil
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return false, fmt.Errorf("dashboard address %q: %w", addr, err)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false, nil
		}
	}
	return len(ips) > 0, nil
}

// Listen serves h on addr. With certsDir (a directory of shoal certs init) it serves TLS and
// admits only operator certificates of that CA (shoal certs operator), on any address;
// without, it serves plain HTTP on a loopback address and refuses any other.
func Listen(addr, certsDir string, h http.Handler, logger *slog.Logger) (*Server, error) {
	loop, err := Loopback(addr)
	if err != nil {
		return nil, err
	}
	if !loop && certsDir == "" {
		return nil, fmt.Errorf("%w: %s is not loopback; issue an operator certificate (shoal certs operator --dir DIR --name NAME) "+
			"and pass the certificate directory, or listen on %s", ErrNeedsOperatorTLS, addr, DefaultAddr)
	}
	var tlsCfg *tls.Config
	if certsDir != "" {
		var rev *pki.Revocations
		if tlsCfg, rev, err = pki.OperatorTLS(certsDir); err != nil {
			return nil, err
		}
		h = revocationGuard{h: h, rev: rev}
	} else {
		listenHost, _, _ := net.SplitHostPort(addr)
		h = hostGuard{h: h, listenHost: listenHost}
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	s := &Server{lis: lis, URL: "http://" + lis.Addr().String() + "/"}
	if tlsCfg != nil {
		lis = tls.NewListener(lis, tlsCfg)
		s.URL, s.TLS = "https://"+s.lis.Addr().String()+"/", true
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s.hs = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug)} // refused handshakes are logged at debug
	go func() { _ = s.hs.Serve(lis) }()
	return s, nil
}

// recheck is how often a request being served (an event stream) is checked against the
// revocation list.
const recheck = time.Second

// revocationGuard re-checks the operator certificate of each request and, while it is being
// served, every recheck: the handshake checks a connection once, but a kept-alive connection
// or an event stream outlives a revocation.
type revocationGuard struct {
	h   http.Handler
	rev *pki.Revocations
}

func (g revocationGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil {
		http.Error(w, "operator certificate required", http.StatusForbidden)
		return
	}
	if err := g.rev.CheckConnFresh(*r.TLS); err != nil {
		http.Error(w, "operator certificate refused: "+err.Error(), http.StatusForbidden)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		t := time.NewTicker(recheck)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if g.rev.CheckConnFresh(*r.TLS) != nil {
					cancel()
					return
				}
			}
		}
	}()
	g.h.ServeHTTP(w, r.WithContext(ctx))
}

// hostGuard serves a plain-HTTP (loopback) dashboard only to requests naming a loopback
// host: a web page the operator visits could otherwise point its own name at 127.0.0.1 (DNS
// rebinding) and read the dashboard as a page of its own origin.
type hostGuard struct {
	h          http.Handler
	listenHost string
}

func (g hostGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")) // [::1] on port 80
	if !(host == "localhost" || host == g.listenHost || ip != nil && ip.IsLoopback()) {
		http.Error(w, "the dashboard answers only to a loopback host name", http.StatusMisdirectedRequest)
		return
	}
	g.h.ServeHTTP(w, r)
}

// Close stops serving, giving open pages up to grace to receive the last events.
func (s *Server) Close(grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := s.hs.Shutdown(ctx); err != nil {
		_ = s.hs.Close()
	}
}
