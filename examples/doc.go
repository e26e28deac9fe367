// Package examples holds no Go code: each directory is a "bring your own model" example (a
// trainer in Python, a README and a run.sh that runs it under `shoal simulate --trainer`; see
// docs/trainer.md). The examples need PyTorch or scikit-learn, so they run from their run.sh,
// not from go test; examples_test.go checks that each is complete and its scripts parse.
package examples
