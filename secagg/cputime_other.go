//go:build !linux

package secagg

import "time"

var processStart = time.Now()

// threadCPU falls back to wall-clock time where per-thread CPU time is not available.
func threadCPU() time.Duration { return time.Since(processStart) }
