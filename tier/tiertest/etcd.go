// Package tiertest runs real etcd clusters for the tier's tests: etcd server processes (Debian's
// etcd-server, which .ci/run installs) on loopback, each member killable on its own.
package tiertest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Member is one etcd process.
type Member struct {
	Name   string
	Client string // client URL
	cmd    *exec.Cmd
	out    *bytes.Buffer
	done   chan struct{}
}

// Cluster is an etcd cluster of real processes.
type Cluster struct {
	Members []*Member
	t       testing.TB
	mu      sync.Mutex
}

// Binary is the etcd server the tests run.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatalf("etcd server not found (Debian: apt-get install etcd-server; .ci/run installs it): %v", err)
	}
	return p
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start runs an n-member cluster with short heartbeats (a lost leader is replaced in about a
// second) and waits until it answers; the members are killed when the test ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	type urls struct{ peer, client string }
	u := make([]urls, n)
	var initial []string
	for i := range u {
		u[i] = urls{fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), fmt.Sprintf("http://127.0.0.1:%d", freePort(t))}
		initial = append(initial, fmt.Sprintf("m%d=%s", i, u[i].peer))
	}
	c := &Cluster{t: t}
	for i := range u {
		name := fmt.Sprintf("m%d", i)
		m := &Member{Name: name, Client: u[i].client, out: &bytes.Buffer{}, done: make(chan struct{})}
		m.cmd = exec.Command(bin, "--name", name, "--data-dir", filepath.Join(dir, name),
			"--listen-peer-urls", u[i].peer, "--initial-advertise-peer-urls", u[i].peer,
			"--listen-client-urls", u[i].client, "--advertise-client-urls", u[i].client,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "shoal-test", "--heartbeat-interval", "50", "--election-timeout", "500",
			"--log-level", "warn")
		m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
		if err := m.cmd.Start(); err != nil {
			t.Fatalf("etcd %s: %v", name, err)
		}
		go func() { _ = m.cmd.Wait(); close(m.done) }()
		c.Members = append(c.Members, m)
	}
	t.Cleanup(func() {
		for _, m := range c.Members {
			m.Kill()
		}
		if t.Failed() {
			for _, m := range c.Members {
				t.Logf("--- etcd %s:\n%s", m.Name, lastLines(m.out.String(), 20))
			}
		}
	})
	cli := c.Client(t)
	defer cli.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Put(ctx, "/shoal-test/up", "1")
		cancel()
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd cluster not up: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Endpoints is the comma-separated client URLs (the --etcd flag's form).
func (c *Cluster) Endpoints() string {
	var e []string
	for _, m := range c.Members {
		e = append(e, m.Client)
	}
	return strings.Join(e, ",")
}

// Client returns a client of the whole cluster.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(c.Endpoints(), ","), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// Kill SIGKILLs the member (it stays down).
func (m *Member) Kill() {
	if m.cmd.Process != nil {
		_ = m.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-m.done
}
