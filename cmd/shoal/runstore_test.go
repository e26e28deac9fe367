package main

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"shoal/store/postgres"
	"shoal/store/postgres/pgtest"
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
