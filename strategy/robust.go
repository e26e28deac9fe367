package strategy

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"shoal/fl"
)

func init() {
	Register("fedmedian", nil, func(Params) (fl.Strategy, error) { return fedMedian{}, nil })
	Register("fedtrimmedavg", []Param{{Name: "trim-fraction", Usage: "fraction cut at each end, in [0, 0.5) (default 0.2)"}}, func(p Params) (fl.Strategy, error) {
		b := p.Get("trim-fraction", 0.2)
		if b >= 0.5 {
			return nil, fmt.Errorf("fedtrimmedavg: --trim-fraction must be in [0, 0.5), got %v", b)
		}
		return &FedTrimmedAvg{Beta: b}, nil
	})
	krumParams := []Param{{Name: "krum-f", Usage: "number of Byzantine clients f tolerated", Integer: true},
		{Name: "krum-keep", Usage: "updates averaged, weighted by their examples (default: Krum 1, MultiKrum n − f)", Integer: true, Positive: true}}
	for _, name := range []string{"krum", "multikrum"} {
		Register(name, krumParams, func(p Params) (fl.Strategy, error) {
			def := 1.0
			if name == "multikrum" {
				def = -1 // n − f, set per round
			}
			return &Krum{name: name, Byzantine: int(p.Get("krum-f", 0)), Keep: int(p.Get("krum-keep", def))}, nil
		})
	}
}

// robust is the shared part of the strategies that must see every update; they are refused
// when a secure sum hides the individual updates.
type robust struct{ meanEval }

func (robust) ConfigureFit(_ int, c fl.FitConfig) fl.FitConfig { return c }
func (robust) NeedsIndividualUpdates() bool                    { return true }

func checkUpdates(name string, global []float32, agg *fl.Aggregate) error {
	if agg == nil || len(agg.Updates) == 0 {
		return fmt.Errorf("%s needs the individual client updates, and this round has none (is a secure sum on?)", name)
	}
	for _, u := range agg.Updates {
		if len(u.Delta) != len(global) {
			return fmt.Errorf("%s: update of client %d has %d coordinates, the model %d", name, u.Client, len(u.Delta), len(global))
		}
	}
	return nil
}

// coordinateWise applies reduce to the values of each coordinate across the cohort and adds the
// result to global.
func coordinateWise(global []float32, updates []fl.Update, reduce func([]float32) float64) {
	col := make([]float32, len(updates))
	for j := range global {
		for i, u := range updates {
			col[i] = u.Delta[j]
		}
		global[j] += float32(reduce(col))
	}
}

// fedMedian moves the model by the coordinate-wise median update (Yin et al. 2018).
type fedMedian struct{ robust }

func (fedMedian) Name() string { return "fedmedian" }
func (fedMedian) AggregateFit(_ int, global []float32, agg *fl.Aggregate) error {
	if err := checkUpdates("fedmedian", global, agg); err != nil {
		return err
	}
	coordinateWise(global, agg.Updates, func(col []float32) float64 {
		slices.Sort(col)
		n := len(col)
		if n%2 == 1 {
			return float64(col[n/2])
		}
		return (float64(col[n/2-1]) + float64(col[n/2])) / 2
	})
	return nil
}

// FedTrimmedAvg moves the model by the coordinate-wise mean after cutting the Beta fraction of
// largest and of smallest values (Yin et al. 2018).
type FedTrimmedAvg struct {
	robust
	Beta float64
}

func (*FedTrimmedAvg) Name() string { return "fedtrimmedavg" }
func (s *FedTrimmedAvg) AggregateFit(_ int, global []float32, agg *fl.Aggregate) error {
	if err := checkUpdates("fedtrimmedavg", global, agg); err != nil {
		return err
	}
	cut := int(s.Beta * float64(len(agg.Updates)))
	coordinateWise(global, agg.Updates, func(col []float32) float64 {
		slices.Sort(col)
		kept := col[cut : len(col)-cut]
		var sum float64
		for _, v := range kept {
			sum += float64(v)
		}
		return sum / float64(len(kept))
	})
	return nil
}

// Krum scores each update by the summed squared distance to its n−f−2 nearest others and
// averages the Keep best-scored ones weighted by their example counts, as Flower does (Keep = 1
// is Krum, more is MultiKrum; Blanchard et al. 2017).
type Krum struct {
	robust
	name      string
	Byzantine int
	Keep      int
}

func (s *Krum) Name() string { return s.name }
func (s *Krum) AggregateFit(_ int, global []float32, agg *fl.Aggregate) error {
	if err := checkUpdates(s.name, global, agg); err != nil {
		return err
	}
	selected, err := s.Select(agg.Updates)
	if err != nil {
		return err
	}
	var total float64
	for _, i := range selected {
		total += agg.Updates[i].Weight
	}
	weight := func(i int) float64 { return agg.Updates[i].Weight / total }
	if !(total > 0) || math.IsInf(total, 0) { // no usable weights: the plain mean
		weight = func(int) float64 { return 1 / float64(len(selected)) }
	}
	for j := range global {
		var sum float64
		for _, i := range selected {
			sum += weight(i) * float64(agg.Updates[i].Delta[j])
		}
		global[j] += float32(sum)
	}
	return nil
}

// Select returns the indices of the updates Krum keeps, best score first.
func (s *Krum) Select(updates []fl.Update) ([]int, error) {
	n := len(updates)
	neighbours := n - s.Byzantine - 2
	if neighbours < 1 {
		return nil, fmt.Errorf("%s needs n > f + 2 updates: have %d with f = %d", s.name, n, s.Byzantine)
	}
	dist := make([][]float64, n)
	for i := range dist {
		dist[i] = make([]float64, n)
	}
	for i := range n {
		for k := i + 1; k < n; k++ {
			var d float64
			for j, a := range updates[i].Delta {
				diff := float64(a) - float64(updates[k].Delta[j])
				d += diff * diff
			}
			dist[i][k], dist[k][i] = d, d
		}
	}
	scores := make([]float64, n)
	row := make([]float64, 0, n-1)
	for i := range n {
		row = row[:0]
		for k := range n {
			if k != i {
				row = append(row, dist[i][k])
			}
		}
		slices.Sort(row)
		for _, d := range row[:neighbours] {
			scores[i] += d
		}
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(scores[a], scores[b]) })
	keep := s.Keep
	if keep < 0 {
		keep = n - s.Byzantine
	}
	keep = max(1, min(keep, n))
	if math.IsNaN(scores[order[0]]) {
		return nil, fmt.Errorf("%s: non-finite distances between updates", s.name)
	}
	return order[:keep], nil
}
