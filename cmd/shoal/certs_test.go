package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"shoal/pki"
)

func runCerts(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"certs"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func decodeOne(t *testing.T, s string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, s)
	}
	if dec.More() {
		t.Fatalf("more than one JSON value on stdout: %s", s)
	}
}

// handshake runs one mutual-TLS handshake over loopback and returns the name the server saw,
// or the server's error.
func handshake(t *testing.T, scfg, ccfg *tls.Config) (string, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		name string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer raw.Close()
		c := tls.Server(raw, scfg)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := c.Handshake(); err != nil {
			ch <- result{err: err}
			return
		}
		name, err := pki.PeerName(c.ConnectionState())
		if err == nil {
			io.WriteString(c, "ok")
		}
		ch <- result{name, err}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), ccfg)
	if err == nil {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.ReadFull(c, make([]byte, 2))
		c.Close()
	}
	r := <-ch
	return r.name, r.err
}

// TestCertsCommands walks one CA through its life: init, issue two clients, handshake,
// revoke one, list, and a new server certificate from the same CA.
func TestCertsCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	certsStepInit(t, dir)
	alice := certsStepIssue(t, dir)
	scfg, err := pki.ServerTLSConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	ccfg, err := pki.ClientTLSConfig(dir, "alice", "fl.example.org")
	if err != nil {
		t.Fatal(err)
	}
	if name, err := handshake(t, scfg, ccfg); err != nil || name != "alice" {
		t.Fatalf("handshake with the issued certificate: %q %v", name, err)
	}
	bob := certsStepRevoke(t, dir, scfg, ccfg, alice.Serial)
	certsStepList(t, dir, alice.Serial)
	certsStepNewServer(t, dir, bob)
}

// certsStepInit creates the CA with a server certificate for three hosts, and checks that a
// second init over it is refused.
func certsStepInit(t *testing.T, dir string) {
	t.Helper()
	code, out, errb := runCerts(t, "init", "--dir", dir, "--hosts", "localhost, 127.0.0.1,fl.example.org", "--json")
	if code != 0 {
		t.Fatalf("init: exit %d: %s", code, errb)
	}
	var init certsInitJSON
	decodeOne(t, out, &init)
	if init.CA != filepath.Join(dir, "ca.pem") || len(init.Hosts) != 3 || init.Hosts[1] != "127.0.0.1" {
		t.Fatalf("init JSON: %+v", init)
	}
	for _, p := range []string{init.CA, init.CAKey, init.ServerCert, init.ServerKey} {
		if _, err := os.Stat(p); err != nil {
			t.Fatal(err)
		}
	}
	if code, _, errb := runCerts(t, "init", "--dir", dir); code != 1 || !strings.Contains(errb, "already exists") {
		t.Fatalf("init over an existing CA: exit %d, %q", code, errb)
	}
}

// certsStepIssue issues certificates to alice (JSON output, returned) and bob (text output).
func certsStepIssue(t *testing.T, dir string) certsClientJSON {
	t.Helper()
	code, out, errb := runCerts(t, "client", "--dir", dir, "--name", "alice", "--json")
	if code != 0 {
		t.Fatalf("client: exit %d: %s", code, errb)
	}
	var alice certsClientJSON
	decodeOne(t, out, &alice)
	if alice.Name != "alice" || alice.Serial == "" || alice.Cert != filepath.Join(dir, "clients", "alice.pem") {
		t.Fatalf("client JSON: %+v", alice)
	}
	if code, out, errb := runCerts(t, "client", "--dir", dir, "--name", "bob"); code != 0 || !strings.Contains(out, "serial") {
		t.Fatalf("client bob: exit %d, %q %q", code, out, errb)
	}
	return alice
}

// certsStepRevoke revokes alice (whose certificate has serial aliceSerial and whose client
// config is alice), checks the server then refuses her and still accepts bob, and returns
// bob's client config.
func certsStepRevoke(t *testing.T, dir string, scfg, alice *tls.Config, aliceSerial string) *tls.Config {
	t.Helper()
	code, out, errb := runCerts(t, "revoke", "--dir", dir, "--name", "alice", "--json")
	if code != 0 {
		t.Fatalf("revoke: exit %d: %s", code, errb)
	}
	var rev struct {
		Name, Serial string
		RevokedFile  string `json:"revoked_file"`
	}
	decodeOne(t, out, &rev)
	if rev.Serial != aliceSerial {
		t.Fatalf("revoked serial %s, issued %s", rev.Serial, aliceSerial)
	}
	if _, err := handshake(t, scfg, alice); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("handshake after revoke: %v", err)
	}
	bob, err := pki.ClientTLSConfig(dir, "bob", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	if name, err := handshake(t, scfg, bob); err != nil || name != "bob" {
		t.Fatalf("bob after alice's revocation: %q %v", name, err)
	}
	return bob
}

// certsStepList checks the JSON and text listings: alice revoked, bob valid.
func certsStepList(t *testing.T, dir, aliceSerial string) {
	t.Helper()
	code, out, errb := runCerts(t, "list", "--dir", dir, "--json")
	if code != 0 {
		t.Fatalf("list: exit %d: %s", code, errb)
	}
	var list struct {
		Clients []certsListEntryJSON `json:"clients"`
	}
	decodeOne(t, out, &list)
	if len(list.Clients) != 2 || list.Clients[0].Name != "alice" || !list.Clients[0].Revoked || list.Clients[0].Valid ||
		list.Clients[1].Name != "bob" || !list.Clients[1].Valid || list.Clients[0].Serial != aliceSerial {
		t.Fatalf("list: %+v", list)
	}
	if code, out, _ := runCerts(t, "list", "--dir", dir); code != 0 || !strings.Contains(out, "revoked") || !strings.Contains(out, "valid") {
		t.Fatalf("list (text): exit %d %q", code, out)
	}
}

// certsStepNewServer issues a new server certificate for another host, from the same CA, and
// checks bob can reach the server under that name.
func certsStepNewServer(t *testing.T, dir string, bob *tls.Config) {
	t.Helper()
	if code, _, errb := runCerts(t, "server", "--dir", dir, "--hosts", "10.0.0.7"); code != 0 {
		t.Fatalf("server: exit %d: %s", code, errb)
	}
	scfg, err := pki.ServerTLSConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	bob.ServerName = "10.0.0.7"
	if name, err := handshake(t, scfg, bob); err != nil || name != "bob" {
		t.Fatalf("bob with the new server certificate: %q %v", name, err)
	}
}

func TestCertsBadUsage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	for _, args := range [][]string{
		{"init"},
		{"init", "--dir", dir, "--hosts", "https://x"},
		{"init", "--dir", dir, "--hosts", ","},
		{"init", "--dir", dir, "extra"},
		{"init", "--dir", dir, "--name", "x"},
		{"client", "--dir", dir},
		{"client", "--dir", dir, "--name", "../evil"},
		{"client", "--dir", dir, "--name", strings.Repeat("n", 65)},
		{"client", "--name", "alice"},
		{"revoke", "--dir", dir, "--name", "a b"},
		{"server", "--dir", dir, "--hosts", "host:443"},
		{"list"},
	} {
		if code, _, errb := runCerts(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errb)
		}
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("a refused command created the directory")
	}
	// Well-formed commands that fail: no CA yet, unknown client.
	for _, args := range [][]string{
		{"client", "--dir", dir, "--name", "alice"},
		{"revoke", "--dir", dir, "--name", "alice"},
		{"list", "--dir", dir},
	} {
		if code, _, errb := runCerts(t, args...); code != 1 || errb == "" {
			t.Errorf("%v: exit %d, want 1 (%s)", args, code, errb)
		}
	}
	if code, _, _ := runCerts(t, "init", "-h"); code != 0 {
		t.Errorf("init -h: exit %d", code)
	}
}
