package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ErrNoRevocationList is the cause of the refusals while a certificate directory has no
// revoked.txt: nobody can tell which certificates were revoked, so none is accepted (unless
// RevocationOptions.AllowMissing). `shoal certs init` writes an empty list.
var ErrNoRevocationList = errors.New("revocation list missing")

// ErrRevoked is wrapped by the refusal of a revoked certificate (Check, CheckSerial and the
// handshake check of ServerTLSConfigWith).
var ErrRevoked = errors.New("certificate revoked")

// ErrRevocationUnusable is wrapped by every refusal while the revocation list is missing,
// unreadable or malformed: nobody can tell who is revoked, so every client is refused.
var ErrRevocationUnusable = errors.New("revocation list unusable, refusing every client")

// maxRevokedBytes bounds revoked.txt (about 200,000 serials with comments): a larger file is
// refused, as an unreadable one, rather than read into memory every heartbeat.
const maxRevokedBytes = 16 << 20

// RevocationOptions say how a server treats its revocation list.
type RevocationOptions struct {
	// AllowMissing makes a missing revoked.txt mean "nobody is revoked" instead of refusing
	// every client. It is for deployments that never revoke and accept what it costs: while
	// it is set, deleting the list un-revokes every client. A list that exists but cannot be
	// read or parsed refuses every client even so.
	AllowMissing bool
}

// Revocations is a server's live view of the revocation list of a certificate directory
// (revoked.txt). Refresh re-reads the list when it changed; Check, CheckSerial and CheckConn
// answer from the last read, without I/O. It fails closed: while the list is missing (unless
// AllowMissing), unreadable or malformed, every check fails, so no client is accepted — and a
// server that re-checks its live sessions (grpctransport.ServerConfig.Revocation) closes them
// all.
//
// A change is noticed by the file's size, modification time and SHA-256: Refresh reads and
// hashes the file on every call (its caller bounds the rate: the transport calls it once per
// heartbeat), so even an edit that keeps size and modification time is seen. The TLS
// handshake check (ServerTLSConfigWith) looks at size and modification time only, so a
// connecting client is judged by the list on disk, not by the last heartbeat's view.
type Revocations struct {
	path string
	opts RevocationOptions

	mu      sync.Mutex
	stamp   fileStamp
	sum     [sha256.Size]byte
	hashed  bool            // sum is the hash of the content serials and err were parsed from
	serials map[string]bool // revoked serials (lowercase hex); valid when err is nil
	err     error           // why the list is unusable, or nil
}

// fileStamp is what os.Stat says of the list; the zero value matches no file.
type fileStamp struct {
	state   fileState
	size    int64
	modTime time.Time
}

type fileState int

const (
	stampNone    fileState = iota // not looked at, or stat failed
	stampMissing                  // no such file
	stampPresent
)

// OpenRevocations reads dir's revocation list. It fails if the list is unusable: missing
// (ErrNoRevocationList, unless opts.AllowMissing), unreadable or malformed.
func OpenRevocations(dir string, opts RevocationOptions) (*Revocations, error) {
	r := &Revocations{path: filepath.Join(dir, RevokedFile), opts: opts}
	if err := r.Refresh(); err != nil {
		return nil, err
	}
	return r, nil
}

// Path is the revocation list's file.
func (r *Revocations) Path() string { return r.path }

// Refresh re-reads the revocation list: it reads and hashes the file, and parses it again
// when its content changed. It returns why the list is unusable (every check fails until a
// later Refresh succeeds), or nil.
func (r *Revocations) Refresh() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reload(true)
	return r.err
}

// refreshIfTouched re-reads the list if its size or modification time changed, or it
// appeared or vanished, since the last read: the cheap check of every TLS handshake.
func (r *Revocations) refreshIfTouched() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reload(false)
}

// reload brings the view up to date; with full, it reads the file even if its stamp did not
// change. Called with r.mu held.
func (r *Revocations) reload(full bool) {
	fi, err := os.Stat(r.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.stamp, r.hashed = fileStamp{state: stampMissing}, false
		if r.opts.AllowMissing {
			r.serials, r.err = map[string]bool{}, nil
		} else {
			r.serials, r.err = nil, missingListError(r.path)
		}
		return
	case err != nil:
		r.stamp, r.hashed, r.serials = fileStamp{}, false, nil
		r.err = fmt.Errorf("revocation list: %w", err)
		return
	case !fi.Mode().IsRegular():
		r.stamp, r.hashed, r.serials = fileStamp{}, false, nil
		r.err = fmt.Errorf("revocation list %s is not a regular file", r.path)
		return
	}
	stamp := fileStamp{state: stampPresent, size: fi.Size(), modTime: fi.ModTime()}
	if !full && stamp == r.stamp {
		return
	}
	data, err := readBounded(r.path)
	if err != nil {
		r.stamp, r.hashed, r.serials = fileStamp{}, false, nil
		r.err = fmt.Errorf("revocation list: %w", err)
		return
	}
	// The stamp is from before the read: a change after the stat shows as a new stamp at the
	// next look, and is read then.
	r.stamp = stamp
	sum := sha256.Sum256(data)
	if r.hashed && sum == r.sum {
		return // touched, or rewritten with the same content: same verdict
	}
	r.sum, r.hashed = sum, true
	serials, err := parseRevoked(data)
	if err != nil {
		r.serials, r.err = nil, fmt.Errorf("revocation list %s: %w", r.path, err)
		return
	}
	r.serials, r.err = serials, nil
}

// readBounded reads a revocation list of at most maxRevokedBytes.
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(f, maxRevokedBytes+1)); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if buf.Len() > maxRevokedBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxRevokedBytes)
	}
	return buf.Bytes(), nil
}

func missingListError(path string) error {
	return fmt.Errorf("%w: %s does not exist (restore it; only if no certificate was ever revoked, create it empty, as `shoal certs init` does)",
		ErrNoRevocationList, path)
}

// CheckSerial returns nil if the certificate with this serial (lowercase hex, as Serial
// gives) may connect: the list is usable and does not name it.
func (r *Revocations) CheckSerial(serial string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return fmt.Errorf("%w: %w", ErrRevocationUnusable, r.err)
	}
	if r.serials[serial] {
		return fmt.Errorf("%w: client certificate %s", ErrRevoked, serial)
	}
	return nil
}

// Check returns nil if cert is not revoked (see CheckSerial).
func (r *Revocations) Check(cert *x509.Certificate) error {
	if err := r.CheckSerial(serialText(cert.SerialNumber)); err != nil {
		return fmt.Errorf("%w (CN %q)", err, cert.Subject.CommonName)
	}
	return nil
}

// CheckConnFresh is CheckConn after re-reading the list if it changed (as a handshake does).
func (r *Revocations) CheckConnFresh(cs tls.ConnectionState) error {
	r.refreshIfTouched()
	return r.CheckConn(cs)
}

// CheckConn checks the client certificate of a completed TLS connection (see CheckSerial):
// a connection without one fails.
func (r *Revocations) CheckConn(cs tls.ConnectionState) error {
	if !cs.HandshakeComplete || len(cs.PeerCertificates) == 0 {
		return errors.New("no client certificate")
	}
	return r.Check(cs.PeerCertificates[0])
}
