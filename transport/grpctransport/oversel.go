package grpctransport

import (
	"fmt"
	"math"
	"math/rand/v2"

	"shoal/fl"
)

// OverSelect wraps inner so that every round asks ⌈factor·m⌉ clients when inner picks m
// (Bonawitz et al. 2019): the extra clients are drawn uniformly from the rest, and the server
// ends the fit stage as soon as m of them have answered, cancelling the others. factor 1 is
// inner itself.
func (s *Server) OverSelect(inner fl.Sampler, factor float64) (fl.Sampler, error) {
	if !(factor >= 1 && factor <= 10) {
		return nil, fmt.Errorf("over-selection factor must be in [1, 10], got %v", factor)
	}
	if factor == 1 {
		return inner, nil
	}
	if _, poisson := inner.(*fl.PoissonSampler); poisson {
		return nil, fmt.Errorf("over-selection would change the Poisson sampling the privacy accounting assumes")
	}
	return &overSampler{inner: inner, factor: factor, srv: s}, nil
}

type overSampler struct {
	inner  fl.Sampler
	factor float64
	srv    *Server
}

func (o *overSampler) Sample(round, n int, rng *rand.Rand) []fl.ClientID {
	base := o.inner.Sample(round, n, rng)
	want := min(n, int(math.Ceil(o.factor*float64(len(base))-1e-9)))
	o.srv.mu.Lock()
	o.srv.needed[round] = len(base)
	o.srv.mu.Unlock()
	if want <= len(base) {
		return base
	}
	in := make(map[fl.ClientID]bool, want)
	for _, id := range base {
		in[id] = true
	}
	rest := make([]fl.ClientID, 0, n-len(base))
	for i := range n {
		if !in[fl.ClientID(i)] {
			rest = append(rest, fl.ClientID(i))
		}
	}
	for i := 0; len(base) < want; i++ {
		k := i + rng.IntN(len(rest)-i)
		rest[i], rest[k] = rest[k], rest[i]
		base = append(base, rest[i])
	}
	return base
}

func (o *overSampler) Describe() string {
	return fmt.Sprintf("%s, over-selected ×%g (the first to answer are kept)", o.inner.Describe(), o.factor)
}
