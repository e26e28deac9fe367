package postgres

import (
	"os"
	"testing"
	"time"

	"shoal/store/postgres/pgtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

func TestSmoke(t *testing.T) {
	t0 := time.Now()
	u := pgtest.NewStore(t)
	t.Logf("cluster up in %v", time.Since(t0))
	s, err := Open(t.Context(), u, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t.Log(s.Path())
	run, err := s.CreateRun([]byte(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CommitRound(run, 1, []float32{1, 2}, []byte(`{}`), nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), u, Options{}); err == nil {
		t.Fatal("second open")
	} else {
		t.Log(err)
	}
}
