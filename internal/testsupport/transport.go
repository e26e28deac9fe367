package testsupport

import (
	"context"

	"shoal/fl"
)

// FitTap is an fl.Transport that shows each fit outcome to OnFit before the engine sees it.
type FitTap struct {
	fl.Transport
	OnFit func(fl.FitOutcome)
}

// Fit runs the inner transport's Fit, tapping every outcome.
func (t *FitTap) Fit(ctx context.Context, cohort []fl.ClientID, ins fl.FitIns, deliver func(fl.FitOutcome)) error {
	return t.Transport.Fit(ctx, cohort, ins, func(o fl.FitOutcome) { t.OnFit(o); deliver(o) })
}

// FitErrors wraps tr so that each client's fit outcome error (nil: an answer the transport
// accepted) is kept in the returned map, which the engine fills during the round: read it
// once the round has ended.
func FitErrors(tr fl.Transport) (*FitTap, map[fl.ClientID]error) {
	errs := map[fl.ClientID]error{}
	return &FitTap{Transport: tr, OnFit: func(o fl.FitOutcome) { errs[o.Client] = o.Err }}, errs
}
