// Package pgtest gives tests a real PostgreSQL server: the one SHOAL_TEST_POSTGRES names
// (postgres://user:password@host:port/database, as .ci/postgres.sh exports it), or else a
// throwaway cluster of the installed server binaries (Debian's postgresql), created with initdb
// in a temporary directory, run by a non-root user when the tests run as root (PostgreSQL
// refuses root), and removed by StopShared. A missing server is a failure that names the
// package to install, never a skipped test.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names an existing server (and database) for the tests.
const EnvURL = "SHOAL_TEST_POSTGRES"

// EnvBinDir names the directory of initdb and pg_ctl when they are neither on PATH nor in
// Debian's /usr/lib/postgresql/N/bin.
const EnvBinDir = "SHOAL_PG_BINDIR"

const install = "install Debian's postgresql package (apt-get install -y postgresql), or set " + EnvURL +
	"=postgres://user:password@host:port/database to use a running server"

// Cluster is a PostgreSQL server this process created, listening on 127.0.0.1.
type Cluster struct {
	dir, data, bin string
	port           int
	password       string
	cred           *syscall.Credential // the user the server runs as, when we are root
}

// StartCluster creates and starts a throwaway cluster with a database "shoal" owned by the
// password-authenticated role "shoal".
func StartCluster() (*Cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin}
	if os.Getuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, and PostgreSQL refuses root: no user 'postgres' to run it as (%v); %s", err, install)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	removeOrphans()
	if c.dir, err = os.MkdirTemp("", "shoal-pg-"); err != nil {
		return nil, err
	}
	// The owner's pid lets a later run remove this cluster if the owner dies without Destroy
	// (a test binary killed by its -timeout never reaches TestMain's cleanup).
	if err := os.WriteFile(filepath.Join(c.dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	c.data = filepath.Join(c.dir, "data")
	ok := false
	defer func() {
		if !ok {
			c.Destroy()
		}
	}()
	if c.cred != nil {
		if err := os.Chown(c.dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return nil, err
		}
	}
	pw := make([]byte, 12)
	rand.Read(pw)
	c.password = hex.EncodeToString(pw)
	pwFile := filepath.Join(c.dir, "pw")
	if err := os.WriteFile(pwFile, []byte(c.password+"\n"), 0o600); err != nil {
		return nil, err
	}
	if c.cred != nil {
		os.Chown(pwFile, int(c.cred.Uid), int(c.cred.Gid))
	}
	if err := c.run("initdb", "-D", c.data, "-U", "shoal", "--pwfile="+pwFile, "--auth-host=scram-sha-256",
		"--auth-local=trust", "--locale=C", "-E", "UTF8", "--no-sync", "--no-instructions"); err != nil {
		return nil, err
	}
	os.Remove(pwFile)
	for try := 0; ; try++ { // a free port can be taken between finding it and binding it
		if c.port, err = freePort(); err == nil {
			if err = c.Start(); err == nil {
				break
			}
		}
		if try == 2 {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.url("postgres", nil))
	if err != nil {
		return nil, fmt.Errorf("connect to the test cluster: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE shoal"); err != nil {
		return nil, fmt.Errorf("create the test database: %w", err)
	}
	ok = true
	return c, nil
}

// URL is the cluster's database "shoal", with the password.
func (c *Cluster) URL() string { return c.url("shoal", nil) }

func (c *Cluster) url(db string, q url.Values) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword("shoal", c.password), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)), Path: "/" + db}
	if q == nil {
		q = url.Values{}
	}
	q.Set("sslmode", "disable")
	u.RawQuery = q.Encode()
	return u.String()
}

// Password is the role's password, for tests that check it never shows.
func (c *Cluster) Password() string { return c.password }

// Start starts the (stopped) cluster on its port and waits until it accepts connections.
func (c *Cluster) Start() error {
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s -c max_connections=60", c.port, c.dir)
	return c.run("pg_ctl", "-D", c.data, "-l", filepath.Join(c.dir, "log"), "-w", "-t", "60", "-o", opts, "start")
}

// Stop stops the cluster: mode "fast" (sessions terminated, clean shutdown) or "immediate" (as
// if the server crashed; recovery replays the WAL on the next start).
func (c *Cluster) Stop(mode string) error {
	return c.run("pg_ctl", "-D", c.data, "-w", "-t", "60", "-m", mode, "stop")
}

// Destroy stops the cluster if it runs and removes its files.
func (c *Cluster) Destroy() {
	if c.data != "" {
		if _, err := os.Stat(filepath.Join(c.data, "postmaster.pid")); err == nil {
			c.Stop("immediate")
		}
	}
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
}

// Log returns the server's log, for failure messages.
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "log"))
	return string(b)
}

func (c *Cluster) run(name string, args ...string) error {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "TZ=UTC"}
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// debianBinDirs is where Debian's postgresql-N packages put the server binaries.
var debianBinDirs = "/usr/lib/postgresql/*/bin"

// binDir finds initdb and pg_ctl.
func binDir() (string, error) {
	if d := os.Getenv(EnvBinDir); d != "" {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err != nil {
			return "", fmt.Errorf("%s=%s has no initdb: %s", EnvBinDir, d, install)
		}
		return d, nil
	}
	dirs, _ := filepath.Glob(debianBinDirs)
	sort.Slice(dirs, func(i, j int) bool { // newest major version first
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found: " + install)
}

// removeOrphans stops and removes the clusters of test processes that died without removing
// them.
func removeOrphans() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "shoal-pg-*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner.pid"))
		if err != nil {
			continue // being created, or not ours
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || alive(pid) {
			continue // its owner lives
		}
		c := &Cluster{dir: d, data: filepath.Join(d, "data")}
		if c.bin, err = binDir(); err != nil {
			return
		}
		if os.Getuid() == 0 {
			if fi, err := os.Stat(d); err == nil {
				st := fi.Sys().(*syscall.Stat_t)
				c.cred = &syscall.Credential{Uid: st.Uid, Gid: st.Gid}
			}
		}
		c.Destroy()
	}
}

// alive reports whether process pid exists and is not a zombie (an unreaped dead process).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) == syscall.ESRCH {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no /proc: trust kill
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var shared struct {
	once    sync.Once
	url     string
	cluster *Cluster
	err     error
}

// SharedURL is the server of this test binary: SHOAL_TEST_POSTGRES, or a cluster started on
// first use (one per test binary; TestMain calls StopShared).
func SharedURL() (string, error) {
	shared.once.Do(func() {
		if u := os.Getenv(EnvURL); u != "" {
			shared.url = u
			return
		}
		shared.cluster, shared.err = StartCluster()
		if shared.err == nil {
			shared.url = shared.cluster.URL()
		}
	})
	return shared.url, shared.err
}

// StopShared removes the cluster SharedURL started, if any.
func StopShared() {
	if shared.cluster != nil {
		shared.cluster.Destroy()
	}
}

// NewStore returns the URL of a new, empty schema of the shared server's database (its own
// run store: the store lives in the first schema of search_path), dropped when t ends.
func NewStore(t testing.TB) string {
	t.Helper()
	base, err := SharedURL()
	if err != nil {
		t.Fatalf("PostgreSQL for the tests: %v", err)
	}
	u, err := NewSchema(base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { DropSchema(u) })
	return u
}

// NewSchema creates a schema with a random name in base's database and returns base with
// search_path set to it.
func NewSchema(base string) (string, error) {
	b := make([]byte, 6)
	rand.Read(b)
	schema := "shoal_test_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return "", fmt.Errorf("connect to the test PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return "", fmt.Errorf("create a test schema: %w", err)
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("%s is not a postgres:// URL: %w", EnvURL, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// DropSchema drops the schema NewSchema made (best effort: the server may be gone).
func DropSchema(storeURL string) {
	u, err := url.Parse(storeURL)
	if err != nil {
		return
	}
	q := u.Query()
	schema := q.Get("search_path")
	if !strings.HasPrefix(schema, "shoal_test_") {
		return
	}
	q.Del("search_path")
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
}
