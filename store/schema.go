package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// migrations[i] brings the schema from version i to version i+1. Append new steps; never edit
// a released one. Each runs in its own transaction with the version bump.
//
// Layout matters for speed with blobs of megabytes: rounds is a rowid table, so finding a row
// never reads its payload (an index b-tree such as a WITHOUT ROWID table compares whole
// records, reading every overflow page), and the small columns come before the blobs, so
// reading them does not walk the overflow chain of a model.
var migrations = []string{
	// 1: runs, rounds (round 0 is the initial model), clients, public material.
	`CREATE TABLE runs (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		config     BLOB NOT NULL,
		created_at TEXT NOT NULL
	);
	CREATE TABLE rounds (
		id             INTEGER PRIMARY KEY,
		run_id         INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
		round          INTEGER NOT NULL CHECK (round >= 0),
		model_len      INTEGER NOT NULL CHECK (model_len >= 0),
		model_sha256   BLOB NOT NULL CHECK (length(model_sha256) = 32),
		committed_at   TEXT NOT NULL,
		metrics        BLOB CHECK (round = 0 OR metrics IS NOT NULL),
		accountant     BLOB,
		strategy_state BLOB,
		model          BLOB NOT NULL,
		UNIQUE (run_id, round)
	);
	CREATE TABLE clients (
		name        TEXT PRIMARY KEY,
		cert_serial TEXT NOT NULL,
		first_seen  TEXT NOT NULL,
		last_seen   TEXT NOT NULL
	);
	CREATE TABLE public (
		run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
		key    TEXT NOT NULL,
		value  BLOB NOT NULL,
		PRIMARY KEY (run_id, key)
	);`,
}

// SchemaVersion is the schema version this program writes.
var SchemaVersion = len(migrations)

// migrate creates or upgrades the schema on conn, refusing a schema newer than this program.
func migrate(ctx context.Context, conn *sql.Conn) error {
	// The application id goes first: a file with tables but no id is someone else's.
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA application_id = %d", applicationID)); err != nil {
		return fmt.Errorf("set application id: %w", explain(err))
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		id         INTEGER PRIMARY KEY CHECK (id = 1),
		version    INTEGER NOT NULL,
		updated_at TEXT NOT NULL
	)`); err != nil {
		return fmt.Errorf("schema version table: %w", explain(err))
	}
	for {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate: %w", explain(err))
		}
		version := 0
		err = tx.QueryRowContext(ctx, "SELECT version FROM schema_version WHERE id = 1").Scan(&version)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			tx.Rollback()
			return fmt.Errorf("read schema version: %w", explain(err))
		}
		if version > len(migrations) {
			tx.Rollback()
			return fmt.Errorf("%w: file has schema version %d, this program knows up to %d; use a newer shoal", ErrFutureSchema, version, len(migrations))
		}
		if version == len(migrations) {
			return tx.Rollback()
		}
		if _, err := tx.ExecContext(ctx, migrations[version]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate schema %d -> %d: %w", version, version+1, explain(err))
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version(id, version, updated_at) VALUES (1, ?, ?)
			ON CONFLICT(id) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at`, version+1, now()); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate schema %d -> %d: %w", version, version+1, explain(err))
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate schema %d -> %d: %w", version, version+1, explain(err))
		}
	}
}
