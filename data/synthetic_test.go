package data

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func TestSyntheticShapes(t *testing.T) {
	fed, err := Synthetic(1, 1, 30, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := fed.Validate(); err != nil {
		t.Fatal(err)
	}
	if fed.Train.Dim != 60 || fed.Train.Classes != 10 || len(fed.Clients) != 30 || len(fed.TestClients) != 30 {
		t.Fatalf("dimension %d, %d classes, %d/%d clients", fed.Train.Dim, fed.Train.Classes, len(fed.Clients), len(fed.TestClients))
	}
	for k := range fed.Clients {
		n := len(fed.Clients[k]) + len(fed.TestClients[k])
		if n < 50 {
			t.Errorf("client %d has %d examples, want at least 50", k, n)
		}
		if got := len(fed.Clients[k]); got != 4*n/5 {
			t.Errorf("client %d: %d training examples of %d, want 80%%", k, got, n)
		}
	}
	// Labels come from per-client models: with α = β = 1 clients disagree, so at least
	// one client's label histogram must differ strongly from the pooled one.
	pooled := LabelHistogram(fed.Train.Y, 10, nil)
	skewed := false
	for _, idx := range fed.Clients {
		h := LabelHistogram(fed.Train.Y, 10, idx)
		for c := range h {
			if float64(h[c])/float64(len(idx)) > 2*float64(pooled[c])/float64(fed.Train.Len())+0.2 {
				skewed = true
			}
		}
	}
	if !skewed {
		t.Error("Synthetic(1,1): no client's label distribution differs from the pooled one")
	}
}

func TestSyntheticDeterminism(t *testing.T) {
	a, err := Synthetic(0.5, 0.5, 10, 3)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Synthetic(0.5, 0.5, 10, 3)
	c, _ := Synthetic(0.5, 0.5, 10, 4)
	if !slices.Equal(a.Train.X, b.Train.X) || !slices.Equal(a.Train.Y, b.Train.Y) || !slices.Equal(a.Test.X, b.Test.X) {
		t.Error("same seed gave different data")
	}
	if len(a.Train.X) == len(c.Train.X) && slices.Equal(a.Train.X, c.Train.X) {
		t.Error("seeds 3 and 4 gave the same data")
	}
}

func TestSyntheticFeatureDistribution(t *testing.T) {
	// With β = 0 every client's feature mean v_k has entries ~ N(0, 1) and features have
	// variance Σ_jj = j^-1.2 around it: the first feature varies far more than the last.
	fed, err := Synthetic(0, 0, 20, 5)
	if err != nil {
		t.Fatal(err)
	}
	within := func(j int) float64 {
		total, count := 0.0, 0
		for _, idx := range fed.Clients {
			mean := 0.0
			for _, i := range idx {
				mean += float64(fed.Train.X[i*60+j])
			}
			mean /= float64(len(idx))
			for _, i := range idx {
				d := float64(fed.Train.X[i*60+j]) - mean
				total += d * d
			}
			count += len(idx)
		}
		return total / float64(count)
	}
	if v := within(0); v < 0.9 || v > 1.1 {
		t.Errorf("within-client variance of feature 1 = %.3f, want Σ_11 = 1", v)
	}
	if v, want := within(59), 0.0074; v < want*0.85 || v > want*1.15 { // 60^-1.2
		t.Errorf("within-client variance of feature 60 = %.4f, want Σ = %.4f", v, want)
	}
}

func TestSyntheticErrors(t *testing.T) {
	for _, c := range []struct {
		alpha, beta float64
		clients     int
		want        string
	}{
		{-1, 0, 10, "alpha"},
		{0, -0.5, 10, "beta"},
		{0, 0, 0, "clients"},
		{math.NaN(), 0, 10, "alpha"},
		{0, math.Inf(1), 10, "beta"},
		{2e6, 0, 10, "alpha"},
		{0, 0, 10_000_000, "fewer clients"},
	} {
		if _, err := Synthetic(c.alpha, c.beta, c.clients, 1); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Synthetic(%v, %v, %d): error %v, want one about %s", c.alpha, c.beta, c.clients, err, c.want)
		}
	}
}

func TestSyntheticIID(t *testing.T) {
	fed, err := SyntheticIID(20, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := fed.Validate(); err != nil {
		t.Fatal(err)
	}
	noniid, err := Synthetic(1, 1, 20, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Mean total-variation distance between each client's label distribution and the pooled
	// one: small when all clients share one model and feature distribution, large otherwise.
	spread := func(f *Federated) float64 {
		pooled := LabelHistogram(f.Train.Y, 10, nil)
		sum := 0.0
		for _, idx := range f.Clients {
			h := LabelHistogram(f.Train.Y, 10, idx)
			tv := 0.0
			for c := range h {
				tv += math.Abs(float64(h[c])/float64(len(idx)) - float64(pooled[c])/float64(f.Train.Len()))
			}
			sum += tv / 2
		}
		return sum / float64(len(f.Clients))
	}
	iid, skewed := spread(fed), spread(noniid)
	if iid > 0.2 || skewed < 0.4 {
		t.Errorf("label distance to pooled: IID %.2f (want < 0.2), Synthetic(1,1) %.2f (want > 0.4)", iid, skewed)
	}
	t.Logf("mean label TV distance to pooled: IID %.3f, Synthetic(1,1) %.3f", iid, skewed)
}
