package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
)

// The checks and the model format every RunStore implementation shares, so that the stores
// keep one contract (see RunStore).

// CheckCommit checks the arguments of CommitRound before any transaction.
func CheckCommit(runID int64, round int, metrics, accountant []byte) error {
	if round < 1 {
		return fmt.Errorf("commit round %d of run %d: rounds are numbered from 1", round, runID)
	}
	if !json.Valid(metrics) {
		return fmt.Errorf("commit round %d of run %d: metrics are not valid JSON", round, runID)
	}
	if accountant != nil && !json.Valid(accountant) {
		return fmt.Errorf("commit round %d of run %d: accountant state is not valid JSON", round, runID)
	}
	return nil
}

// CheckNext checks, inside the commit's transaction, that round (a model of n parameters)
// follows the last committed round (lastLen parameters; −1 if no model is stored).
func CheckNext(round, n, last, lastLen int) error {
	if round != last+1 {
		return fmt.Errorf("out of order: last committed round is %d, want %d", last, last+1)
	}
	if lastLen >= 0 && lastLen != n {
		return fmt.Errorf("model has %d parameters, round %d had %d", n, last, lastLen)
	}
	return nil
}

// EncodeModel lays the model out as little-endian float32s (bit-exact, NaN payloads included)
// and returns it with its SHA-256: the model format of every run store.
func EncodeModel(model []float32) ([]byte, [sha256.Size]byte) {
	blob := make([]byte, 4*len(model))
	for i, v := range model {
		binary.LittleEndian.PutUint32(blob[4*i:], math.Float32bits(v))
	}
	return blob, sha256.Sum256(blob)
}

// DecodeModel reads n parameters from a blob of EncodeModel, checked against its length and
// SHA-256 (an error wrapping ErrCorrupt).
func DecodeModel(blob []byte, n int, sum []byte) ([]float32, error) {
	if n < 0 || len(blob) != 4*n {
		return nil, fmt.Errorf("%w: model blob has %d bytes, want %d for %d parameters", ErrCorrupt, len(blob), 4*n, n)
	}
	got := sha256.Sum256(blob)
	if string(got[:]) != string(sum) {
		return nil, fmt.Errorf("%w: model checksum mismatch", ErrCorrupt)
	}
	model := make([]float32, n)
	for i := range model {
		model[i] = math.Float32frombits(binary.LittleEndian.Uint32(blob[4*i:]))
	}
	return model, nil
}
