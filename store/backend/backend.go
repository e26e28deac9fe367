// Package backend opens a run store from a --store value: a PostgreSQL URL (postgres:// or
// postgresql://) opens package store/postgres, anything else is an SQLite file or directory
// (package store, the default). It lives apart from both so that neither imports the other.
package backend

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"shoal/store"
	"shoal/store/postgres"
)

// Mode is how a store is opened.
type Mode int

const (
	// Create opens a store, creating it if missing (store.Open).
	Create Mode = iota
	// Existing opens a store that must exist, as a resume does (store.OpenExisting).
	Existing
	// ReadOnly opens an existing store for reading beside its writer (store.OpenReadOnly).
	ReadOnly
)

// LockWait is how long a PostgreSQL store waits for the writer lock of a process that just
// died: its database session can outlive it by a moment. A live writer still gets
// store.ErrLocked, after this wait.
var LockWait = 3 * time.Second

// IsPostgres reports whether spec names a PostgreSQL database rather than an SQLite file.
func IsPostgres(spec string) bool {
	s := strings.ToLower(spec)
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// Open opens the run store spec names. The PostgreSQL store logs its reconnections to logger
// (nil: slog.Default()); ctx bounds the opening only.
func Open(ctx context.Context, spec string, mode Mode, logger *slog.Logger) (store.RunStore, error) {
	if IsPostgres(spec) {
		o := postgres.Options{Logger: logger, LockWait: LockWait}
		switch mode {
		case Existing:
			return postgres.OpenExisting(ctx, spec, o)
		case ReadOnly:
			return postgres.OpenReadOnly(ctx, spec, o)
		}
		return postgres.Open(ctx, spec, o)
	}
	switch mode {
	case Existing:
		return store.OpenExisting(spec)
	case ReadOnly:
		return store.OpenReadOnly(spec)
	}
	return store.Open(spec)
}

// Redact returns spec with any password replaced by "xxxxx", for messages and for the run
// configuration the server records; a file path is returned as it is.
func Redact(spec string) string {
	if !IsPostgres(spec) {
		return spec
	}
	u, err := url.Parse(spec)
	if err != nil {
		return fmt.Sprintf("%s://(unparsable URL)", spec[:strings.Index(spec, ":")])
	}
	q := u.Query()
	for k := range q {
		if strings.EqualFold(k, "password") || strings.EqualFold(k, "sslpassword") {
			q.Set(k, "xxxxx")
			u.RawQuery = q.Encode()
		}
	}
	return u.Redacted()
}
