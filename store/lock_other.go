//go:build !unix

package store

import "os"

// lockStore is a no-op where flock is unavailable: SQLite's own locking still keeps the file
// consistent, and rounds still commit in order, but two servers are not prevented.
func lockStore(string) (*os.File, error) { return nil, nil }
