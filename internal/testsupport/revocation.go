package testsupport

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
)

// Revocations is a revocation list for a server's revocation hook (grpctransport's
// Revocation), held in memory and revoking by name. Like a list on disk, it has two sides:
// Revoke, Reinstate, Break and Mend change the "file", and the server sees a change only at
// its next Refresh, which Check answers from. Refreshes counts the refreshes, so a test can
// check how often the server polls.
type Revocations struct {
	mu        sync.Mutex
	file      map[string]bool // the list as written
	fileErr   error           // why the list as written is unusable
	view      map[string]bool // the list as last refreshed
	viewErr   error
	refreshes int
}

// NewRevocations returns an empty, usable list.
func NewRevocations() *Revocations {
	return &Revocations{file: map[string]bool{}, view: map[string]bool{}}
}

// ErrListBroken is the error Break makes the list fail with unless given another.
var ErrListBroken = errors.New("revocation list missing")

// Revoke adds names to the list.
func (r *Revocations) Revoke(names ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range names {
		r.file[n] = true
	}
}

// Reinstate removes names from the list.
func (r *Revocations) Reinstate(names ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range names {
		delete(r.file, n)
	}
}

// Break makes the list unusable (a deleted or corrupted file): Refresh fails with err, or
// ErrListBroken if err is nil.
func (r *Revocations) Break(err error) {
	if err == nil {
		err = ErrListBroken
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fileErr = err
}

// Mend makes the list usable again, with the names it held.
func (r *Revocations) Mend() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fileErr = nil
}

// Refresh takes the list as written as the view, and fails while it is broken.
func (r *Revocations) Refresh() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refreshes++
	r.view, r.viewErr = maps.Clone(r.file), r.fileErr
	return r.viewErr
}

// Check fails for a name the view lists, or for every name while the view is broken.
func (r *Revocations) Check(_ context.Context, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.viewErr != nil {
		return fmt.Errorf("revocation list unusable: %w", r.viewErr)
	}
	if r.view[name] {
		return fmt.Errorf("client %s is revoked", name)
	}
	return nil
}

// Refreshes is how many times Refresh was called.
func (r *Revocations) Refreshes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refreshes
}
