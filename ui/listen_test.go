package ui

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

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
