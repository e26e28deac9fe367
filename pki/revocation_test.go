package pki

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Attack: delete the revocation list (or lose it in a botched copy) and every revoked client
// is back in. Now a missing list refuses every client at the handshake, and a server cannot
// start without one; putting the list back restores exactly the old verdicts.
func TestAttackDeletedRevocationListUnrevokes(t *testing.T) {
	dir := newCA(t)
	scfg, err := ServerTLSConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	addr, ch := tlsServer(t, scfg)
	alice := mustClient(t, dir, "alice", "localhost")
	mallory := mustClient(t, dir, "mallory", "localhost")
	if err := Revoke(dir, "mallory"); err != nil {
		t.Fatal(err)
	}
	expectRefused(t, addr, ch, mallory, "revoked")
	expectAccepted(t, addr, ch, alice, "alice")

	list := filepath.Join(dir, RevokedFile)
	saved, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(list); err != nil {
		t.Fatal(err)
	}
	expectRefused(t, addr, ch, mallory, "revocation list missing")
	expectRefused(t, addr, ch, alice, "revocation list missing")
	if _, err := ServerTLSConfig(dir); !errors.Is(err, ErrNoRevocationList) {
		t.Fatalf("ServerTLSConfig without a revocation list: %v, want ErrNoRevocationList", err)
	}
	// Nor does a revocation quietly recreate a lost list with one line in it.
	if err := Revoke(dir, "alice"); !errors.Is(err, ErrNoRevocationList) {
		t.Fatalf("Revoke with the list missing: %v, want ErrNoRevocationList", err)
	}
	if _, err := ListClients(dir); !errors.Is(err, ErrNoRevocationList) {
		t.Fatalf("ListClients with the list missing: %v, want ErrNoRevocationList", err)
	}

	if err := os.WriteFile(list, saved, 0o644); err != nil {
		t.Fatal(err)
	}
	expectRefused(t, addr, ch, mallory, "revoked")
	expectAccepted(t, addr, ch, alice, "alice")
}

// A list that exists but is not a list — malformed, a directory, a device, too large —
// refuses every client, with or without AllowMissing, until it is mended.
func TestRevocationListFailsClosed(t *testing.T) {
	for _, allowMissing := range []bool{false, true} {
		dir := newCA(t)
		mustClient(t, dir, "alice", "")
		rev, err := OpenRevocations(dir, RevocationOptions{AllowMissing: allowMissing})
		if err != nil {
			t.Fatal(err)
		}
		alice, err := ClientSerial(dir, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if err := rev.CheckSerial(alice); err != nil {
			t.Fatalf("alice refused by a good list: %v", err)
		}
		list := rev.Path()
		for _, tc := range []struct {
			name    string
			corrupt func() error
		}{
			{"malformed", func() error { return os.WriteFile(list, []byte("not-hex\n"), 0o644) }},
			{"directory", func() error { return os.Mkdir(list, 0o700) }},
			{"device", func() error { return os.Symlink(os.DevNull, list) }},
			{"too large", func() error { return os.WriteFile(list, make([]byte, maxRevokedBytes+1), 0o644) }},
		} {
			if err := os.RemoveAll(list); err != nil {
				t.Fatal(err)
			}
			if err := tc.corrupt(); err != nil {
				t.Fatal(err)
			}
			if err := rev.Refresh(); err == nil {
				t.Errorf("allow-missing %v, %s list: Refresh succeeded", allowMissing, tc.name)
			}
			if err := rev.CheckSerial(alice); err == nil || !strings.Contains(err.Error(), "revocation list unusable") {
				t.Errorf("allow-missing %v, %s list: alice %v, want refused", allowMissing, tc.name, err)
			}
			if _, err := OpenRevocations(dir, RevocationOptions{AllowMissing: allowMissing}); err == nil {
				t.Errorf("allow-missing %v, %s list: OpenRevocations succeeded", allowMissing, tc.name)
			}
		}
		if err := os.RemoveAll(list); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(list, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := rev.Refresh(); err != nil {
			t.Fatalf("mended list: %v", err)
		}
		if err := rev.CheckSerial(alice); err != nil {
			t.Fatalf("alice refused by a mended list: %v", err)
		}
	}
}

// AllowMissing: a missing list means nobody is revoked (and only that); once a list appears
// it is enforced, and deleting it again un-revokes everyone — the cost the option documents.
func TestRevocationsAllowMissing(t *testing.T) {
	dir := newCA(t)
	mustClient(t, dir, "alice", "")
	list := filepath.Join(dir, RevokedFile)
	if err := os.Remove(list); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenRevocations(dir, RevocationOptions{}); !errors.Is(err, ErrNoRevocationList) {
		t.Fatalf("OpenRevocations without a list: %v", err)
	}
	rev, err := OpenRevocations(dir, RevocationOptions{AllowMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := ClientSerial(dir, "alice")
	if err := rev.CheckSerial(alice); err != nil {
		t.Fatalf("allow-missing, no list: %v", err)
	}
	if err := os.WriteFile(list, []byte(alice+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rev.Refresh(); err != nil {
		t.Fatal(err)
	}
	if err := rev.CheckSerial(alice); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("allow-missing, alice listed: %v", err)
	}
	if err := os.Remove(list); err != nil {
		t.Fatal(err)
	}
	if err := rev.Refresh(); err != nil {
		t.Fatal(err)
	}
	if err := rev.CheckSerial(alice); err != nil {
		t.Fatalf("allow-missing, list deleted: %v", err)
	}
}

// Refresh sees an edit that keeps the file's size and modification time (by its hash); the
// handshake's cheaper look (size and modification time) sees any other.
func TestRevocationsNoticeChanges(t *testing.T) {
	dir := newCA(t)
	rev, err := OpenRevocations(dir, RevocationOptions{})
	if err != nil {
		t.Fatal(err)
	}
	list := rev.Path()
	stamp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(list, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(list, stamp, stamp); err != nil {
			t.Fatal(err)
		}
	}
	write("aaaa\n")
	if err := rev.Refresh(); err != nil {
		t.Fatal(err)
	}
	write("bbbb\n") // same size, same time
	rev.refreshIfTouched()
	if rev.CheckSerial("aaaa") == nil || rev.CheckSerial("bbbb") != nil {
		t.Fatal("the handshake's look re-read a file whose size and time did not change")
	}
	if err := rev.Refresh(); err != nil {
		t.Fatal(err)
	}
	if rev.CheckSerial("aaaa") != nil || rev.CheckSerial("bbbb") == nil {
		t.Fatal("Refresh missed an edit that kept size and modification time")
	}
	write("bbbb\ncccc\n")
	rev.refreshIfTouched()
	if rev.CheckSerial("cccc") == nil {
		t.Fatal("the handshake's look missed a change of size")
	}
}

// A fresh CA comes with an empty, valid revocation list, so a fresh setup serves; a forced
// re-init keeps an existing list.
func TestInitCAWritesRevocationList(t *testing.T) {
	dir := newCA(t)
	list := filepath.Join(dir, RevokedFile)
	data, err := os.ReadFile(list)
	if err != nil {
		t.Fatalf("no revocation list after InitCA: %v", err)
	}
	if serials, err := parseRevoked(data); err != nil || len(serials) != 0 {
		t.Fatalf("new list: %v %v", serials, err)
	}
	if _, err := ServerTLSConfig(dir); err != nil {
		t.Fatalf("fresh setup: %v", err)
	}
	mustClient(t, dir, "alice", "")
	if err := Revoke(dir, "alice"); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(list)
	if err := InitCA(dir, nil, true); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(list); string(after) != string(before) {
		t.Fatalf("forced re-init rewrote the revocation list:\n%s\nwas\n%s", after, before)
	}
}
