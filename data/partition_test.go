package data

import (
	"math"
	"slices"
	"strings"
	"testing"
)

// mnistLikeLabels returns labels with perClass examples of each class, interleaved as in a
// shuffled dataset (so sorting by label matters).
func mnistLikeLabels(classes, perClass int) []int32 {
	labels := make([]int32, classes*perClass)
	for i := range labels {
		labels[i] = int32(i % classes)
	}
	return labels
}

func distinctLabels(labels []int32, part []int) int {
	n := 0
	for _, c := range LabelHistogram(labels, 10, part) {
		if c > 0 {
			n++
		}
	}
	return n
}

func TestPartitionCoversEveryExampleOnce(t *testing.T) {
	labels := mnistLikeLabels(10, 101) // 1010 examples: sizes do not divide evenly
	for _, kind := range PartitionKinds() {
		for _, clients := range []int{1, 3, 10, 100, 505} {
			parts, err := Partition(kind, labels, 10, clients, 0.1, 7)
			if err != nil {
				t.Fatalf("%s, %d clients: %v", kind, clients, err)
			}
			if len(parts) != clients {
				t.Fatalf("%s: %d parts, want %d", kind, len(parts), clients)
			}
			if err := CheckPartition(parts, len(labels)); err != nil {
				t.Fatalf("%s, %d clients: %v", kind, clients, err)
			}
			for c, p := range parts {
				if len(p) == 0 {
					t.Fatalf("%s, %d clients: client %d is empty", kind, clients, c)
				}
				if !slices.IsSorted(p) {
					t.Fatalf("%s: client %d indices not sorted", kind, c)
				}
			}
		}
	}
}

func TestPartitionIIDSizes(t *testing.T) {
	labels := mnistLikeLabels(10, 1003)
	parts, err := Partition("iid", labels, 10, 7, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := len(labels), 0
	for _, p := range parts {
		lo, hi = min(lo, len(p)), max(hi, len(p))
	}
	if hi-lo > 1 {
		t.Errorf("iid sizes range over [%d, %d], want equal ±1", lo, hi)
	}
	// A shuffled IID split gives each client every class, near its overall share.
	for c, p := range parts {
		for k, n := range LabelHistogram(labels, 10, p) {
			if want := len(p) / 10; n < want/2 || n > 2*want {
				t.Errorf("iid client %d has %d examples of class %d, want about %d", c, n, k, want)
			}
		}
	}
}

func TestPartitionShardsMcMahan(t *testing.T) {
	// MNIST-like: 60,000 examples, 100 clients → 200 shards of 300. With class sizes that are
	// multiples of 300 each shard holds one label, so every client has at most 2 labels.
	labels := mnistLikeLabels(10, 6000)
	parts, err := Partition("shards", labels, 10, 100, 0, 42)
	if err != nil {
		t.Fatal(err)
	}
	twoLabels := 0
	for c, p := range parts {
		if len(p) != 600 {
			t.Fatalf("client %d has %d examples, want 2 shards of 300", c, len(p))
		}
		n := distinctLabels(labels, p)
		if n > 2 {
			t.Fatalf("client %d has %d labels, want ≤ 2", c, n)
		}
		if n == 2 {
			twoLabels++
		}
		for k, count := range LabelHistogram(labels, 10, p) {
			if count != 0 && count != 300 && count != 600 {
				t.Fatalf("client %d has %d examples of class %d, want whole shards of 300", c, count, k)
			}
		}
	}
	// Random shard pairing: most clients get two different labels (for 200 shards of 10
	// labels, a pair matches with probability about 1/10).
	if twoLabels < 70 {
		t.Errorf("only %d of 100 clients have two labels: shards do not look randomly paired", twoLabels)
	}
}

func TestPartitionShardsUneven(t *testing.T) {
	labels := mnistLikeLabels(10, 99) // 990 examples, 40 shards of 24 or 25
	parts, err := Partition("shards", labels, 10, 20, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	for c, p := range parts {
		if len(p) < 48 || len(p) > 50 {
			t.Errorf("client %d has %d examples, want two shards of 24 or 25", c, len(p))
		}
		// A shard of sorted labels spans at most 2 classes here (shards < class size).
		if n := distinctLabels(labels, p); n > 4 {
			t.Errorf("client %d has %d labels, want ≤ 4", c, n)
		}
	}
}

func TestPartitionDirichletSkew(t *testing.T) {
	labels := mnistLikeLabels(10, 1000)
	meanLabels := func(alpha float64) float64 {
		parts, err := Partition("dirichlet", labels, 10, 20, alpha, 5)
		if err != nil {
			t.Fatal(err)
		}
		// Count labels that hold at least 5% of a client's data.
		total := 0
		for _, p := range parts {
			for _, n := range LabelHistogram(labels, 10, p) {
				if n*20 >= len(p) {
					total++
				}
			}
		}
		return float64(total) / float64(len(parts))
	}
	skewed, balanced := meanLabels(0.05), meanLabels(100)
	if skewed > 3 {
		t.Errorf("alpha 0.05: clients have %.1f major labels on average, want strong skew (≤ 3)", skewed)
	}
	if balanced < 9.5 {
		t.Errorf("alpha 100: clients have %.1f major labels on average, want nearly all 10", balanced)
	}
}

func TestPartitionDirichletTinyAlphaManyClients(t *testing.T) {
	// Tiny alpha leaves most clients without data before the repair step.
	labels := mnistLikeLabels(10, 50)
	parts, err := Partition("dirichlet", labels, 10, 500, 0.001, 9)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPartition(parts, len(labels)); err != nil {
		t.Fatal(err)
	}
	for c, p := range parts {
		if len(p) != 1 {
			t.Fatalf("500 examples over 500 clients: client %d has %d", c, len(p))
		}
	}
}

func TestPartitionDirichletExtremeAlpha(t *testing.T) {
	labels := mnistLikeLabels(10, 30)
	for _, alpha := range []float64{5e-324, 1e-300, 1e-9, 1e9, math.MaxFloat64} {
		parts, err := Partition("dirichlet", labels, 10, 7, alpha, 2)
		if err != nil {
			t.Fatalf("alpha %v: %v", alpha, err)
		}
		if err := CheckPartition(parts, len(labels)); err != nil {
			t.Fatalf("alpha %v: %v", alpha, err)
		}
	}
}

func TestPartitionDeterminism(t *testing.T) {
	labels := mnistLikeLabels(10, 200)
	for _, kind := range PartitionKinds() {
		a, err := Partition(kind, labels, 10, 20, 0.5, 11)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := Partition(kind, labels, 10, 20, 0.5, 11)
		c, _ := Partition(kind, labels, 10, 20, 0.5, 12)
		if !slices.EqualFunc(a, b, slices.Equal) {
			t.Errorf("%s: same seed gave different partitions", kind)
		}
		if slices.EqualFunc(a, c, slices.Equal) {
			t.Errorf("%s: seeds 11 and 12 gave the same partition", kind)
		}
	}
}

func TestPartitionErrors(t *testing.T) {
	labels := mnistLikeLabels(10, 5)
	cases := []struct {
		kind    string
		labels  []int32
		classes int
		clients int
		alpha   float64
		want    string
	}{
		{"random", labels, 10, 5, 1, "valid partitions are iid, shards, dirichlet"},
		{"iid", labels, 10, 0, 1, "want at least 1"},
		{"iid", labels, 10, 51, 1, "more clients (51) than examples (50)"},
		{"iid", nil, 10, 1, 1, "no examples"},
		{"shards", labels, 10, 30, 1, "need at least 60 examples"},
		{"dirichlet", labels, 10, 5, 0, "alpha = 0"},
		{"dirichlet", labels, 10, 5, -1, "alpha = -1"},
		{"iid", []int32{0, 1, 10}, 10, 1, 1, "label 10"},
		{"shards", []int32{0, -1}, 10, 1, 1, "label -1"},
	}
	for _, c := range cases {
		_, err := Partition(c.kind, c.labels, c.classes, c.clients, c.alpha, 1)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Partition(%q, %d labels, %d clients, alpha %v): error %v, want one containing %q",
				c.kind, len(c.labels), c.clients, c.alpha, err, c.want)
		}
	}
}

func TestDirichletSampler(t *testing.T) {
	r := newRand(1, 2)
	p := make([]float64, 4)
	mean := make([]float64, 4)
	square := 0.0
	const draws = 20000
	for range draws {
		dirichlet(r, 0.5, p)
		sum := 0.0
		for i, v := range p {
			if v < 0 {
				t.Fatalf("negative proportion %v", v)
			}
			sum += v
			mean[i] += v / draws
			square += v * v / (4 * draws)
		}
		if sum < 1-1e-9 || sum > 1+1e-9 {
			t.Fatalf("proportions sum to %v", sum)
		}
	}
	// Symmetric Dirichlet(α=0.5, K=4): each mean is 1/K and E[p_i²] = (α+1)/(K(Kα+1)) = 0.125.
	for i, m := range mean {
		if m < 0.24 || m > 0.26 {
			t.Errorf("mean of p[%d] = %.4f, want 0.25", i, m)
		}
	}
	if square < 0.12 || square > 0.13 {
		t.Errorf("mean of p_i² = %.4f, want 0.125", square)
	}
}

func TestLogGammaMean(t *testing.T) {
	r := newRand(3, 4)
	for _, shape := range []float64{0.1, 0.5, 1, 2.5, 10} {
		const draws = 40000
		sum := 0.0
		for range draws {
			sum += math.Exp(logGamma(r, shape))
		}
		mean := sum / draws
		// Gamma(shape, 1) has mean shape and variance shape: allow 5 standard errors.
		if tol := 5 * math.Sqrt(shape/draws); mean < shape-tol || mean > shape+tol {
			t.Errorf("Gamma(%v) sample mean %.4f, want %v ± %.4f", shape, mean, shape, tol)
		}
	}
}

func BenchmarkPartition(b *testing.B) {
	labels := mnistLikeLabels(10, 6000)
	for _, kind := range PartitionKinds() {
		b.Run(kind, func(b *testing.B) {
			for b.Loop() {
				if _, err := Partition(kind, labels, 10, 100, 0.5, 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPartitionManyClients(b *testing.B) {
	labels := mnistLikeLabels(10, 6000)
	for _, kind := range PartitionKinds() {
		b.Run(kind, func(b *testing.B) {
			for b.Loop() {
				if _, err := Partition(kind, labels, 10, 10000, 0.1, 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
