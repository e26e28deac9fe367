//go:build !unix

package nn

import "time"

// cpuTime is not measured on this platform; the benchmarks then report wall time only.
func cpuTime() time.Duration { return 0 }
