package nn_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"shoal/data"
	"shoal/nn"
)

func TestScratchMNIST(t *testing.T) {
	train, test, err := data.LoadMNIST("")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	m, _ := nn.New("2nn", nn.Shape{1, 28, 28}, 10, rng)
	for ep := 0; ep < 3; ep++ {
		st := time.Now()
		loss, err := m.Train(train.X, train.Y, nn.TrainConfig{Epochs: 1, BatchSize: 10, LR: 0.05}, rng)
		tt := time.Since(st)
		st = time.Now()
		tl, acc, err2 := m.Evaluate(test.X, test.Y)
		t.Logf("2nn epoch %d: train loss %.4f (%v), test loss %.4f acc %.4f (eval %v) %v %v", ep, loss, tt, tl, acc, time.Since(st), err, err2)
	}
	c, _ := nn.New("cnn", nn.Shape{1, 28, 28}, 10, rng)
	st := time.Now()
	loss, err := c.Train(train.X[:10000*784], train.Y[:10000], nn.TrainConfig{Epochs: 1, BatchSize: 32, LR: 0.05, Momentum: 0.9}, rng)
	tt := time.Since(st)
	st = time.Now()
	tl, acc, err2 := c.Evaluate(test.X[:2000*784], test.Y[:2000])
	t.Logf("cnn 10k examples: train loss %.4f (%v), test loss %.4f acc %.4f (eval 2k %v) %v %v", loss, tt, tl, acc, time.Since(st), err, err2)
}
