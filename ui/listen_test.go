package ui

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"shoal/fl"
	"shoal/pki"
)

func testHandler(t *testing.T) *Handler {
	t.Helper()
	live, err := NewLive(LiveInfo{ID: "run", Name: "run", Kind: "live simulate", Rounds: 3, Config: []byte("rounds = 3\n")})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(live)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A dashboard on a non-loopback address is refused without operator certificates; with them
// it serves TLS to an operator's certificate and refuses a client's (and no certificate).
func TestNonLoopbackNeedsOperatorCertificate(t *testing.T) {
	h := testHandler(t)
	if _, err := Listen("0.0.0.0:0", "", h, nil); !errors.Is(err, ErrNeedsOperatorTLS) {
		t.Fatalf("plain HTTP on every interface: %v, want ErrNeedsOperatorTLS", err)
	}
	dir := t.TempDir()
	if err := pki.InitCA(dir, []string{"127.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	if err := pki.IssueClient(dir, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := pki.IssueOperator(dir, "olga"); err != nil {
		t.Fatal(err)
	}
	srv, err := Listen("0.0.0.0:0", dir, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(time.Second)
	if !srv.TLS || !strings.HasPrefix(srv.URL, "https://") {
		t.Fatalf("served at %s (TLS %v)", srv.URL, srv.TLS)
	}
	_, port, _ := net.SplitHostPort(srv.lis.Addr().String())
	url := "https://127.0.0.1:" + port + "/api/runs"

	get := func(cfg *tls.Config) (string, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := c.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	op, err := pki.OperatorTLSClientConfig(dir, "olga", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if body, err := get(op); err != nil || !strings.Contains(body, `"id": "run"`) {
		t.Fatalf("operator: %v %s", err, body)
	}
	client, err := pki.ClientTLSConfig(dir, "alice", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if body, err := get(client); err == nil {
		t.Fatalf("a client certificate opened the dashboard: %s", body)
	}
	anonymous := op.Clone()
	anonymous.Certificates = nil
	if body, err := get(anonymous); err == nil {
		t.Fatalf("no certificate opened the dashboard: %s", body)
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:8080": true, "[::1]:80": true, "localhost:1": true,
		":8080": false, "0.0.0.0:8080": false, "10.1.2.3:8080": false} {
		if got, err := Loopback(addr); err != nil || got != want {
			t.Errorf("Loopback(%q) = %v, %v; want %v", addr, got, err, want)
		}
	}
}

// The dashboard is read-only, and its pages carry a policy that allows no script or style
// from anywhere but itself.
func TestReadOnlyAndPolicy(t *testing.T) {
	srv, err := Listen("127.0.0.1:0", "", testHandler(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(time.Second)
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		req, _ := http.NewRequest(method, srv.URL+"api/runs", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("%s: %v %v", method, resp, err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(srv.URL + "runs/run")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || resp.StatusCode != 200 {
		t.Fatalf("status %d, policy %q", resp.StatusCode, csp)
	}
}

// operatorDashboard serves a live run over TLS to the operators of a new CA with operator
// "olga"; it returns the CA directory, the run and the port.
func operatorDashboard(t *testing.T) (dir string, live *Live, port string) {
	t.Helper()
	live, err := NewLive(LiveInfo{ID: "run", Name: "run", Kind: "live server", Rounds: 3, Config: []byte("rounds = 3\n")})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(live)
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	if err := pki.InitCA(dir, []string{"127.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	if err := pki.IssueOperator(dir, "olga"); err != nil {
		t.Fatal(err)
	}
	srv, err := Listen("127.0.0.1:0", dir, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(time.Second) })
	_, port, _ = net.SplitHostPort(srv.lis.Addr().String())
	return dir, live, port
}

// An operator certificate of another CA (a valid operator certificate, the same name) does
// not open the dashboard.
func TestAttackOperatorOfAnotherCA(t *testing.T) {
	_, _, port := operatorDashboard(t)
	other := t.TempDir()
	if err := pki.InitCA(other, []string{"127.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	if err := pki.IssueOperator(other, "olga"); err != nil {
		t.Fatal(err)
	}
	cfg, err := pki.OperatorTLSClientConfig(other, "olga", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg.InsecureSkipVerify = true // the attacker does not care whom it talks to
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	resp, err := c.Get("https://127.0.0.1:" + port + "/api/runs")
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("an operator of another CA opened the dashboard: %s %s", resp.Status, b)
	}
}

// A revoked operator keeps neither its open event stream nor its kept-alive connection: the
// handshake admitted the connection before the revocation.
func TestAttackRevokedOperatorKeepsDashboard(t *testing.T) {
	dir, live, port := operatorDashboard(t)
	cfg, err := pki.OperatorTLSClientConfig(dir, "olga", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, MaxConnsPerHost: 1}}
	base := "https://127.0.0.1:" + port
	resp, err := c.Get(base + "/api/runs/run/events")
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, resp.Body); resp.Body.Close(); close(ended) }()

	certPath, _ := pki.OperatorPaths(dir, "olga")
	pemBytes, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemBytes)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, pki.RevokedFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(pki.Serial(cert) + " # olga\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	live.Round(fl.RoundReport{Round: 1, Accuracy: 0.5})
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked operator's event stream stayed open")
	}
	// The pooled connection (if the server kept it) carries the next request: refused.
	resp, err = c.Get(base + "/api/runs/run/rounds")
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("a revoked operator read the rounds: %s", b)
		}
	}
}

// A web page the operator visits points its own name at 127.0.0.1 (DNS rebinding) and reads
// the loopback dashboard: its requests name the page's host, and are refused.
func TestAttackDNSRebindingReadsLoopbackDashboard(t *testing.T) {
	srv, err := Listen("127.0.0.1:0", "", testHandler(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(time.Second)
	_, port, _ := net.SplitHostPort(srv.lis.Addr().String())
	for host, want := range map[string]int{"evil.example:" + port: http.StatusMisdirectedRequest, "evil.example": http.StatusMisdirectedRequest,
		"127.0.0.1:" + port: http.StatusOK, "localhost:" + port: http.StatusOK, "[::1]:" + port: http.StatusOK, "[::1]": http.StatusOK, "localhost.evil.example": http.StatusMisdirectedRequest} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"api/runs", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("Host %s: %s %s, want %d", host, resp.Status, b, want)
		}
	}
}
