package privacy_test

import (
	"encoding/json"
	"fmt"

	"shoal/privacy"
)

// DP-SGD on MNIST in TensorFlow Privacy's tutorial: 60 epochs at batch 256 of 60,000 examples.
func ExampleRDPAccountant() {
	acct := privacy.NewRDPAccountant(privacy.ConversionImproved)
	if err := acct.Compose(256.0/60000, 1.1, 14063); err != nil {
		panic(err)
	}
	spent, err := acct.Spent(1e-5)
	if err != nil {
		panic(err)
	}
	fmt.Printf("ε = %.2f at δ = 1e-5 (best order %.1f)\n", spent.Epsilon, spent.Order)
	// Output: ε = 2.60 at δ = 1e-5 (best order 8.1)
}

// An engine saves the accountant with each checkpoint and resumes the count after a restart.
func ExampleRestoreAccountant() {
	acct, _ := privacy.NewAccountant("pld")
	for range 10 {
		acct.Compose(0.01, 1, 1) // one round each
	}
	saved, _ := json.Marshal(acct)
	fmt.Println(string(saved))

	resumed, _ := privacy.RestoreAccountant(saved)
	resumed.Compose(0.01, 1, 1)
	fmt.Println(resumed.Steps())
	// Output:
	// {"accountant":"pld","discretization":0.0001,"events":[{"sampling_rate":0.01,"noise_multiplier":1,"steps":10}]}
	// 11
}

func ExampleCalibrateNoise() {
	z, err := privacy.CalibrateNoise("rdp", 5, 0.01, 1000, 1e-5)
	if err != nil {
		panic(err)
	}
	fmt.Printf("noise multiplier %.3f\n", z)
	// Output: noise multiplier 0.719
}
