package main

import (
	"shoal/fl"
	"shoal/privacy"
)

// adaptiveClip adapts privacy.AdaptiveClipper (Andrew et al. 2021) to the engine.
type adaptiveClip struct {
	a      *privacy.AdaptiveClipper
	valueZ float64
}

// newAdaptiveClipper builds adaptive clipping toward the --adaptive-clip quantile with the
// reference implementation's defaults, starting from --clip, for the expected cohort size.
func newAdaptiveClipper(s secOptions, expectedClients float64) (fl.AdaptiveClipper, error) {
	cfg := privacy.DefaultAdaptiveClipConfig(expectedClients)
	cfg.TargetQuantile = s.AdaptiveClip
	cfg.InitialClip = s.Clip
	a, err := privacy.NewAdaptiveClipper(cfg)
	if err != nil {
		return nil, err
	}
	z, err := a.ValueNoiseMultiplier(s.NoiseMultiplier)
	if err != nil {
		return nil, err
	}
	return &adaptiveClip{a: a, valueZ: z}, nil
}

// MarshalJSON saves the current clip with the run.
func (c *adaptiveClip) MarshalJSON() ([]byte, error) { return c.a.MarshalJSON() }

// UnmarshalJSON restores a clip saved with the run.
func (c *adaptiveClip) UnmarshalJSON(b []byte) error {
	a, err := privacy.RestoreAdaptiveClipper(b)
	if err != nil {
		return err
	}
	c.a = a
	return nil
}

func (c *adaptiveClip) Clip() float64                 { return c.a.Clip() }
func (c *adaptiveClip) ValueNoiseMultiplier() float64 { return c.valueZ }
func (c *adaptiveClip) Update(indicatorSum float64, src *privacy.Source) error {
	_, _, err := c.a.Update(indicatorSum, src)
	return err
}
