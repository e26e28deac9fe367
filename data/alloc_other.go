//go:build !linux

package data

// allocFloats returns a zeroed []float32 of length n (see alloc_linux.go for why it exists).
func allocFloats(n int) []float32 { return make([]float32, n) }
