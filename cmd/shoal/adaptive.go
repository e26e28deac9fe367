package main

import (
	"errors"

	"shoal/fl"
)

// newAdaptiveClipper builds the adaptive clipping rule for the expected cohort size.
func newAdaptiveClipper(s secOptions, expectedClients float64) (fl.AdaptiveClipper, error) {
	return nil, errors.New("adaptive clipping is not wired yet")
}
