//go:build !unix

// Package cputime reads the process's CPU time; on this platform it is not available.
package cputime

import "time"

// Process returns 0: this platform does not report CPU time.
func Process() time.Duration { return 0 }
