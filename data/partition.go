package data

import (
	"cmp"
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
)

// Partition kinds accepted by Partition.
const (
	KindIID       = "iid"       // shuffle, equal sizes ±1
	KindShards    = "shards"    // McMahan et al. 2017: sort by label, two shards per client
	KindDirichlet = "dirichlet" // label skew: per-class proportions ~ Dir(α) over clients
)

// PartitionKinds lists the partition kinds Partition accepts.
func PartitionKinds() []string { return []string{KindIID, KindShards, KindDirichlet} }

// Partition splits example indices among clients. kind is "iid" (shuffle, equal sizes ±1),
// "shards" (McMahan et al. 2017: sort by label, cut into 2·clients shards whose sizes differ by
// at most one, give each client 2 random shards: 200 shards of 300 for 60,000 examples and 100
// clients), or "dirichlet" (label skew: for each class, proportions ~ Dir(alpha) over clients;
// a client left empty then takes one example from the largest client, so every client gets at
// least one). alpha is only used by "dirichlet". Every example is assigned exactly once; each
// client's indices are in increasing order. Deterministic for a seed.
func Partition(kind string, labels []int32, classes, clients int, alpha float64, seed uint64) ([][]int, error) {
	n := len(labels)
	switch {
	case !slices.Contains(PartitionKinds(), kind):
		return nil, fmt.Errorf("unknown partition %q: valid partitions are %s", kind, strings.Join(PartitionKinds(), ", "))
	case clients < 1:
		return nil, fmt.Errorf("%s partition: %d clients, want at least 1", kind, clients)
	case n == 0:
		return nil, fmt.Errorf("%s partition: no examples to partition", kind)
	case clients > n:
		return nil, fmt.Errorf("%s partition: more clients (%d) than examples (%d): every client needs at least one example", kind, clients, n)
	case classes < 1:
		return nil, fmt.Errorf("%s partition: %d classes, want at least 1", kind, classes)
	}
	for i, y := range labels {
		if y < 0 || int(y) >= classes {
			return nil, fmt.Errorf("%s partition: example %d has label %d, want 0 ≤ label < %d", kind, i, y, classes)
		}
	}
	r := newRand(seed, streamPartition)
	var parts [][]int
	switch kind {
	case KindIID:
		parts = partitionIID(r, n, clients)
	case KindShards:
		if n < 2*clients {
			return nil, fmt.Errorf("shards partition: %d examples cannot make 2 shards for each of %d clients (need at least %d examples)", n, clients, 2*clients)
		}
		parts = partitionShards(r, labels, classes, clients)
	case KindDirichlet:
		if !(alpha > 0) || math.IsInf(alpha, 0) {
			return nil, fmt.Errorf("dirichlet partition: concentration alpha = %v, want a finite value > 0", alpha)
		}
		parts = partitionDirichlet(r, labels, classes, clients, alpha)
	}
	return inIndexOrder(parts, n), nil
}

// inIndexOrder returns the same partition with each client's indices in increasing order, in
// O(n) (a bucket pass instead of a sort per client) and in one backing array.
func inIndexOrder(parts [][]int, n int) [][]int {
	owner := make([]int32, n)
	for c, p := range parts {
		for _, i := range p {
			owner[i] = int32(c)
		}
	}
	start := make([]int, len(parts)+1)
	for c, p := range parts {
		start[c+1] = start[c] + len(p)
	}
	order := make([]int, n)
	next := slices.Clone(start[:len(parts)])
	for i, c := range owner {
		order[next[c]] = i
		next[c]++
	}
	sorted := make([][]int, len(parts))
	for c := range sorted {
		sorted[c] = order[start[c]:start[c+1]:start[c+1]]
	}
	return sorted
}

// cut splits order into consecutive pieces of the given sizes, sharing order's memory; the
// pieces are capped so that appending to one cannot overwrite the next.
func cut(order []int, sizes func(i int) int, pieces int) [][]int {
	parts := make([][]int, pieces)
	start := 0
	for i := range parts {
		end := start + sizes(i)
		parts[i] = order[start:end:end]
		start = end
	}
	return parts
}

// balanced returns the size of piece i when n items are cut into k pieces of sizes differing by
// at most one (the first n mod k pieces get the extra item).
func balanced(n, k int) func(i int) int {
	return func(i int) int {
		if i < n%k {
			return n/k + 1
		}
		return n / k
	}
}

func partitionIID(r *rand.Rand, n, clients int) [][]int {
	return cut(r.Perm(n), balanced(n, clients), clients)
}

// sortedByLabel returns the example indices ordered by label, ties in index order (a stable
// counting sort: no comparison sort needed for small label sets).
func sortedByLabel(labels []int32, classes int) []int {
	start := make([]int, classes+1)
	for _, y := range labels {
		start[y+1]++
	}
	for k := 1; k <= classes; k++ {
		start[k] += start[k-1]
	}
	order := make([]int, len(labels))
	for i, y := range labels {
		order[start[y]] = i
		start[y]++
	}
	return order
}

func partitionShards(r *rand.Rand, labels []int32, classes, clients int) [][]int {
	n, numShards := len(labels), 2*clients
	shards := cut(sortedByLabel(labels, classes), balanced(n, numShards), numShards)
	perm := r.Perm(numShards)
	parts := make([][]int, clients)
	for c := range parts {
		a, b := shards[perm[2*c]], shards[perm[2*c+1]]
		parts[c] = append(append(make([]int, 0, len(a)+len(b)), a...), b...)
	}
	return parts
}

func partitionDirichlet(r *rand.Rand, labels []int32, classes, clients int, alpha float64) [][]int {
	order := sortedByLabel(labels, classes)
	counts := LabelHistogram(labels, classes, nil)
	parts := make([][]int, clients)
	p := make([]float64, clients)
	share := make([]int, clients)
	rest := make([]int, clients)
	start := 0
	for k := range classes {
		of := order[start : start+counts[k]]
		start += counts[k]
		if len(of) == 0 {
			continue
		}
		r.Shuffle(len(of), func(i, j int) { of[i], of[j] = of[j], of[i] })
		dirichlet(r, alpha, p)
		apportion(p, len(of), share, rest)
		at := 0
		for c, s := range share {
			parts[c] = append(parts[c], of[at:at+s]...)
			at += s
		}
	}
	// Small alpha leaves clients empty; a client with no data cannot train, so each empty
	// client takes one random example from the currently largest client (a max-heap keeps
	// that O(log clients) per move). With clients ≤ n a donor with at least two examples
	// always exists.
	donors := &bySize{parts: parts}
	for c := range parts {
		if len(parts[c]) > 0 {
			donors.idx = append(donors.idx, c)
		}
	}
	heap.Init(donors)
	for c := range parts {
		if len(parts[c]) > 0 {
			continue
		}
		donor := donors.idx[0]
		j := r.IntN(len(parts[donor]))
		last := len(parts[donor]) - 1
		parts[c] = append(parts[c], parts[donor][j])
		parts[donor][j] = parts[donor][last]
		parts[donor] = parts[donor][:last]
		heap.Fix(donors, 0)
	}
	return parts
}

// bySize is a max-heap of client numbers ordered by their number of examples (ties: lower
// client number first, for determinism).
type bySize struct {
	parts [][]int
	idx   []int
}

func (h *bySize) Len() int { return len(h.idx) }
func (h *bySize) Less(a, b int) bool {
	na, nb := len(h.parts[h.idx[a]]), len(h.parts[h.idx[b]])
	return na > nb || (na == nb && h.idx[a] < h.idx[b])
}
func (h *bySize) Swap(a, b int) { h.idx[a], h.idx[b] = h.idx[b], h.idx[a] }
func (h *bySize) Push(x any)    { h.idx = append(h.idx, x.(int)) }
func (h *bySize) Pop() any {
	x := h.idx[len(h.idx)-1]
	h.idx = h.idx[:len(h.idx)-1]
	return x
}

// apportion splits n items in proportions p (summing to 1) into integer shares summing to n,
// by largest remainder (Hamilton's method); rest is scratch space of len(p).
func apportion(p []float64, n int, share, rest []int) {
	given := 0
	for i, pi := range p {
		share[i] = int(pi * float64(n))
		given += share[i]
		rest[i] = i
	}
	if given >= n {
		return // only when rounding hands out everything already
	}
	frac := func(i int) float64 { return p[i]*float64(n) - float64(share[i]) }
	slices.SortFunc(rest, func(a, b int) int {
		if c := cmp.Compare(frac(b), frac(a)); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	// Real arithmetic needs fewer than len(p) extra items; the loop also absorbs float rounding.
	for j := 0; given < n; j = (j + 1) % len(rest) {
		share[rest[j]]++
		given++
	}
}
