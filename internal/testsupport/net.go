package testsupport

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
)

// bufSize is each in-memory connection's buffer, per direction.
const bufSize = 1 << 20

// Network is an in-memory network of named listeners. A gRPC client reaches a listener by
// dialling Target(name) with DialOptions. No socket is involved, so servers and clients on it
// can run inside a testing/synctest bubble (create the Network and its listeners inside the
// bubble, then).
type Network struct {
	mu        sync.Mutex
	listeners map[string]*bufconn.Listener
}

// NewNetwork returns an empty network.
func NewNetwork() *Network { return &Network{listeners: map[string]*bufconn.Listener{}} }

// Listen opens a listener under name, replacing an earlier one of that name (a server that
// restarts at the same address); it is closed when the test ends.
func (n *Network) Listen(tb testing.TB, name string) net.Listener {
	l := bufconn.Listen(bufSize)
	n.mu.Lock()
	n.listeners[name] = l
	n.mu.Unlock()
	tb.Cleanup(func() { l.Close() })
	return l
}

// Dial connects to the listener named addr; with no listener there, or a closed one, the
// connection is refused.
func (n *Network) Dial(ctx context.Context, addr string) (net.Conn, error) {
	n.mu.Lock()
	l := n.listeners[addr]
	n.mu.Unlock()
	if l == nil {
		return nil, fmt.Errorf("dial %s: connection refused", addr)
	}
	return l.DialContext(ctx)
}

// DialOptions make a gRPC client dial through the network, in plaintext.
func (n *Network) DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithContextDialer(n.Dial),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}
}

// Dialer makes a gRPC client dial through the network, with the transport credentials the
// client sets itself (TLS, for tests of the real handshake inside a synctest bubble).
func (n *Network) Dialer() grpc.DialOption { return grpc.WithContextDialer(n.Dial) }

// Target is the gRPC target of the listener named name (passed through to the dialer as is,
// without name resolution).
func Target(name string) string { return "passthrough:///" + name }
