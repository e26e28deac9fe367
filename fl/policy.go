package fl

import (
	"errors"
	"fmt"
)

// ErrPolicy marks a task, setup or run a client refused because it would weaken the protection
// the client's own configuration requires.
var ErrPolicy = errors.New("refused by the client's privacy policy")

// ClientPolicy is the protection a client requires of every task, from its own configuration:
// the server's word is never the policy. The zero policy requires nothing beyond consistency:
// a run that announced a secure sum never gets an update in the clear.
type ClientPolicy struct {
	// SecureSum is the secure-sum protocol the client requires: a protocol name, "any" for any
	// of them, or "" for none required.
	SecureSum string
	// MaxClip, when > 0, requires every fit task to clip the update, to a norm in (0, MaxClip].
	MaxClip float64
	// MinNoiseMultiplier, when > 0, requires local DP noise of multiplier at least z on every
	// update: LocalNoiseStd ≥ 2·z·ClipNorm (the sensitivity of a replaced update is 2·ClipNorm).
	MinNoiseMultiplier float64
	// MinCohort and MinThreshold bound the secure-sum rounds the client masks its update in:
	// the fewest clients and the lowest reconstruction threshold (checked by the protocol half
	// against the round's setup).
	MinCohort, MinThreshold int
}

// Validate reports a policy that cannot be met by any run.
func (p ClientPolicy) Validate() error {
	switch {
	case p.MaxClip < 0 || p.MinNoiseMultiplier < 0 || p.MinCohort < 0 || p.MinThreshold < 0:
		return errors.New("policy bounds must be ≥ 0")
	case p.MinNoiseMultiplier > 0 && p.MaxClip == 0:
		return errors.New("a minimum local noise needs a clip to be calibrated to: set the required clip too")
	case (p.MinCohort > 0 || p.MinThreshold > 0) && p.SecureSum == "":
		return errors.New("a minimum cohort or threshold needs a required secure sum")
	}
	return nil
}

// CheckRun checks the secure-sum protocol a server announces for its run ("" for none).
func (p ClientPolicy) CheckRun(announced string) error {
	switch {
	case p.SecureSum == "" || p.SecureSum == announced:
		return nil
	case p.SecureSum == "any" && announced != "":
		return nil
	case announced == "":
		return fmt.Errorf("%w: the run has no secure sum, and this client requires %s", ErrPolicy, p.SecureSum)
	}
	return fmt.Errorf("%w: the run uses secure sum %s, and this client requires %s", ErrPolicy, announced, p.SecureSum)
}

// CheckFit checks a fit task in a run that announced secure sum announced ("" for none).
func (p ClientPolicy) CheckFit(ins FitIns, announced string) error {
	if err := p.CheckRun(announced); err != nil {
		return err
	}
	c := ins.Config
	switch {
	case announced != "" && !ins.Secure:
		return fmt.Errorf("%w: the run announced secure sum %s, and this task asks for the update in the clear", ErrPolicy, announced)
	case p.MaxClip > 0 && !(c.ClipNorm > 0 && float64(c.ClipNorm) <= p.MaxClip):
		return fmt.Errorf("%w: the task clips to %v, and this client requires a clip in (0, %v]", ErrPolicy, c.ClipNorm, p.MaxClip)
	case p.MinNoiseMultiplier > 0 && float64(c.LocalNoiseStd) < 2*p.MinNoiseMultiplier*float64(c.ClipNorm)*(1-1e-6):
		return fmt.Errorf("%w: the task's local noise σ = %v is below the required 2·z·S = %v (z = %v, S = %v)", ErrPolicy,
			c.LocalNoiseStd, 2*p.MinNoiseMultiplier*float64(c.ClipNorm), p.MinNoiseMultiplier, c.ClipNorm)
	}
	return nil
}
