package nn_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"shoal/data"
	"shoal/nn"
)

// The real-data checks: MNIST comes from the GoMNIST module through package data (a test-only
// import; package nn itself depends on nothing of Shoal's).

func loadMNIST(tb testing.TB) (train, test *data.Dataset) {
	tb.Helper()
	train, test, err := data.LoadMNIST("")
	if err != nil {
		tb.Fatalf("loading MNIST: %v", err)
	}
	return train, test
}

// TestMNIST2NN trains the 2NN for one epoch over the MNIST training set with McMahan's B = 10 and
// checks the accuracy on the test set: a wrong gradient or update rule lands far below it.
func TestMNIST2NN(t *testing.T) {
	train, test := loadMNIST(t)
	rng := rand.New(rand.NewPCG(1, 2))
	m, err := nn.New("2nn", nn.Shape{C: 1, H: 28, W: 28}, 10, rng)
	if err != nil {
		t.Fatal(err)
	}
	n := train.Len()
	start := time.Now()
	if _, err := m.Train(train.X[:n*784], train.Y[:n], nn.TrainConfig{Epochs: 1, BatchSize: 10, LR: 0.05}, rng); err != nil {
		t.Fatal(err)
	}
	trained := time.Since(start)
	start = time.Now()
	loss, acc, err := m.Evaluate(test.X, test.Y)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("2nn, 1 epoch over %d examples in %v: test loss %.4f, accuracy %.4f (evaluated in %v)", n, trained, loss, acc, time.Since(start))
	if acc < 0.955 {
		t.Errorf("test accuracy %.4f after one epoch, want ≥ 0.955", acc)
	}
}

// BenchmarkMNISTEpoch trains one epoch over all 60,000 MNIST training images (B = 10 for the
// 2NN, B = 32 with momentum for the CNN) and reports the test accuracy reached.
func BenchmarkMNISTEpoch(b *testing.B) {
	train, test := loadMNIST(b)
	for _, c := range []struct {
		arch string
		cfg  nn.TrainConfig
	}{
		{"2nn", nn.TrainConfig{Epochs: 1, BatchSize: 10, LR: 0.05}},
		{"cnn", nn.TrainConfig{Epochs: 1, BatchSize: 32, LR: 0.05, Momentum: 0.9}},
	} {
		b.Run(c.arch, func(b *testing.B) {
			var acc float64
			for b.Loop() {
				rng := rand.New(rand.NewPCG(1, 2))
				m, err := nn.New(c.arch, nn.Shape{C: 1, H: 28, W: 28}, 10, rng)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := m.Train(train.X, train.Y, c.cfg, rng); err != nil {
					b.Fatal(err)
				}
				if _, acc, err = m.Evaluate(test.X, test.Y); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(acc, "test-accuracy")
		})
	}
}
