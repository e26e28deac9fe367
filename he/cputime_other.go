//go:build !unix

package he

import "time"

// processCPU is not available on this platform; RunRound reports zero CPU time.
func processCPU() time.Duration { return 0 }
