package testsupport

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// Patience bounds every wait for an event in this package. On the real clock it is far
// beyond any healthy wait, there only to turn a hang into a failure that says what was
// missing; inside a synctest bubble it is measured on the fake clock, so a missing event is
// reported after Patience of fake time, at once in real time.
const Patience = time.Minute

// Proc is a function running in the background until it returns or is stopped.
type Proc struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// Go runs run in a goroutine with a context that Stop cancels; at the end of the test the
// context is cancelled and run awaited.
func Go(tb testing.TB, run func(ctx context.Context) error) *Proc {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proc{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = run(ctx)
	}()
	tb.Cleanup(func() { p.Stop() })
	return p
}

// Stop cancels the function's context, waits for it to return and returns its error.
func (p *Proc) Stop() error {
	p.cancel()
	<-p.done
	return p.err
}

// Done is closed when the function has returned.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is what the function returned; only valid once Done is closed.
func (p *Proc) Err() error { return p.err }

// Wait waits (with Patience) for the function to return by itself and returns its error.
func (p *Proc) Wait(tb testing.TB, what string) error {
	tb.Helper()
	Recv(tb, p.done, what)
	return p.err
}

// Serve runs serve(lis) in the background (a server's Serve method); at the end of the test
// stop is called (the server's Close) and serve must return. An error from serve fails the
// test.
func Serve(tb testing.TB, lis net.Listener, serve func(net.Listener) error, stop func()) {
	done := make(chan error, 1)
	go func() { done <- serve(lis) }()
	tb.Cleanup(func() {
		stop()
		if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
			tb.Errorf("serve: %v", err)
		}
	})
}

// ClientWaiter is a server that can wait for its clients.
type ClientWaiter interface {
	WaitForClients(ctx context.Context, n int) error
}

// WaitClients waits (with Patience) until at least n clients are connected to s.
func WaitClients(tb testing.TB, s ClientWaiter, n int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Patience)
	defer cancel()
	if err := s.WaitForClients(ctx, n); err != nil {
		tb.Fatal(err)
	}
}

// Recv receives from ch, failing the test with what was awaited if nothing arrives within
// Patience. A closed channel counts as the event (the zero value is returned).
func Recv[T any](tb testing.TB, ch <-chan T, what string) T {
	tb.Helper()
	timer := time.NewTimer(Patience)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		tb.Fatalf("%s: nothing after %v", what, Patience)
		var zero T
		return zero
	}
}
