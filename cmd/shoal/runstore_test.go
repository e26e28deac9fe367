package main

import (
	"context"
	"io"
	"net/url"
	"strings"
	"testing"

	"shoal/store/postgres"
	"shoal/store/postgres/pgtest"
	"shoal/ui"
)

// TestServerKilledAndResumedPostgres is TestServerKilledAndResumed with the run in PostgreSQL
// (--store postgres://...): the server is killed with SIGKILL after some rounds, a new one
// resumes from the database, no round is lost or repeated and the model follows the
// simulator. The password of the URL shows neither in the servers' logs nor in the recorded
// configuration.
func TestServerKilledAndResumedPostgres(t *testing.T) {
	spec := pgtest.NewStore(t)
	logs := killAndResumeOn(t, spec, false, "--fraction", "0.5")
	u, err := url.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	if pw == "" {
		t.Fatal("the test database has no password: nothing to check")
	}
	if strings.Contains(logs, pw) {
		t.Fatalf("a server log shows the database password:\n%s", logs)
	}
	st, err := postgres.OpenReadOnly(context.Background(), spec, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, cfg, err := st.LatestRun()
	if err != nil || strings.Contains(string(cfg), pw) || !strings.Contains(string(cfg), "xxxxx") {
		t.Fatalf("recorded configuration (%v): %s", err, cfg)
	}
	if err := st.Check(); err != nil {
		t.Fatal(err)
	}
}

// The database password of --store does not reach the run directory's config.toml, nor the
// dashboard's configuration table (both are configTOML): an operator who may read the
// dashboard, or the run directory, is not thereby given the database.
func TestAttackStorePasswordInRunConfig(t *testing.T) {
	var o serverOptions
	fs := serverFlags(&o, io.Discard)
	if err := fs.Parse([]string{"--store", "postgres://shoal:hunter2@db.example/shoal?sslpassword=keypass"}); err != nil {
		t.Fatal(err)
	}
	b, err := configTOML(o.simOptions)
	if err != nil {
		t.Fatal(err)
	}
	entries, _, err := ui.ParseConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	var store string
	for _, e := range entries {
		if e.Key == "store" {
			store = e.Value
		}
	}
	if strings.Contains(string(b), "hunter2") || strings.Contains(string(b), "keypass") || !strings.HasPrefix(store, "postgres://shoal:") {
		t.Fatalf("config.toml:\n%s", b)
	}
}
