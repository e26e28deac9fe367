package secagg

import (
	"errors"
	"fmt"
	"math/bits"
)

// Shamir sharing works in GF(p) with the Mersenne prime p = 2^61 - 1: large enough for millions of
// share holders (x-coordinates are client index + 1), and multiplication reduces with shifts.
const fieldP uint64 = 1<<61 - 1

// secretSize is the size of each shared secret (the self-mask seed b_u and the masking private key).
const secretSize = 32

// chunkBytes bytes of a secret fit in one field element (56 < 61 bits).
const chunkBytes = 7

// chunksPerSecret field elements carry one 32-byte secret.
const chunksPerSecret = (secretSize + chunkBytes - 1) / chunkBytes

func fieldAdd(a, b uint64) uint64 {
	s := a + b
	if s >= fieldP {
		s -= fieldP
	}
	return s
}

func fieldSub(a, b uint64) uint64 {
	if a >= b {
		return a - b
	}
	return a + fieldP - b
}

func fieldMul(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	// a*b = hi*2^64 + lo, and 2^61 ≡ 1 (mod p).
	r := (lo & fieldP) + (hi<<3 | lo>>61)
	if r >= fieldP {
		r -= fieldP
	}
	return r
}

// fieldInv returns a^(p-2) = a^-1 for a != 0.
func fieldInv(a uint64) uint64 {
	result := uint64(1)
	base := a
	for e := fieldP - 2; e > 0; e >>= 1 {
		if e&1 == 1 {
			result = fieldMul(result, base)
		}
		base = fieldMul(base, base)
	}
	return result
}

// secretToChunks splits a 32-byte secret into field elements of chunkBytes bytes each.
func secretToChunks(secret *[secretSize]byte, out []uint64) {
	for i := range chunksPerSecret {
		var v uint64
		for j := chunkBytes - 1; j >= 0; j-- {
			if k := i*chunkBytes + j; k < secretSize {
				v = v<<8 | uint64(secret[k])
			} else {
				v <<= 8
			}
		}
		out[i] = v
	}
}

// chunksToSecret is the inverse of secretToChunks; it fails if a chunk is out of range, which
// happens when reconstruction used inconsistent shares.
func chunksToSecret(chunks []uint64, secret *[secretSize]byte) error {
	for i := range chunksPerSecret {
		v := chunks[i]
		for j := range chunkBytes {
			k := i*chunkBytes + j
			if k < secretSize {
				secret[k] = byte(v)
			} else if byte(v) != 0 {
				return errors.New("reconstructed secret out of range (inconsistent shares)")
			}
			v >>= 8
		}
		if v != 0 {
			return errors.New("reconstructed secret out of range (inconsistent shares)")
		}
	}
	return nil
}

// shamirDealer holds the random polynomials that share a group of field elements (all
// chunks of all secrets of one client) with the same threshold t: each polynomial has degree t-1.
type shamirDealer struct {
	secrets int
	t       int
	coeffs  []uint64 // coeffs[j*secrets+s] is the coefficient of x^j of polynomial s
}

// newShamirDealer samples the polynomials; r must be a CSPRNG (or a seeded source in tests).
func newShamirDealer(secrets []uint64, t int, r *byteStream) (*shamirDealer, error) {
	if t < 1 {
		return nil, fmt.Errorf("shamir: threshold %d < 1", t)
	}
	s := len(secrets)
	d := &shamirDealer{secrets: s, t: t, coeffs: make([]uint64, t*s)}
	copy(d.coeffs, secrets)
	for i := s; i < len(d.coeffs); i++ {
		d.coeffs[i] = r.fieldElement()
	}
	return d, nil
}

// shareAt writes the values of all polynomials at x (0 < x ≤ MaxClients) into out, by Horner's
// rule with lazy reduction: since x < 2^17, an accumulator below 2^63 times x is below 2^80,
// whose folded form plus a coefficient stays below 2^63, so each step needs no final compare.
func (d *shamirDealer) shareAt(x uint64, out []uint64) {
	s := d.secrets
	out = out[:s]
	for i := range out {
		out[i] = 0
	}
	for j := d.t - 1; j >= 0; j-- {
		row := d.coeffs[j*s : j*s+s]
		for i, c := range row {
			hi, lo := bits.Mul64(out[i], x)
			out[i] = (lo & fieldP) + (hi<<3 | lo>>61) + c
		}
	}
	for i, v := range out {
		v = (v & fieldP) + (v >> 61)
		if v >= fieldP {
			v -= fieldP
		}
		out[i] = v
	}
}

// lagrangeAtZero writes into out the coefficients λ_i with f(0) = Σ λ_i f(x_i) for any
// polynomial of degree < len(xs). The x_i must be distinct and non-zero.
func lagrangeAtZero(xs []uint64, out []uint64) error {
	n := len(xs)
	// λ_i = Π_{j≠i} x_j / (x_j - x_i). Compute numerators and denominators, then batch-invert.
	num := uint64(1)
	for _, x := range xs {
		if x == 0 || x >= fieldP {
			return fmt.Errorf("shamir: invalid x-coordinate %d", x)
		}
		num = fieldMul(num, x)
	}
	den := out[:n]
	for i, xi := range xs {
		d := xi // the x_i in the numerator is divided out: λ_i = num / (x_i · Π_{j≠i}(x_j - x_i))
		for j, xj := range xs {
			if j != i {
				if xj == xi {
					return fmt.Errorf("shamir: duplicate x-coordinate %d", xi)
				}
				d = fieldMul(d, fieldSub(xj, xi))
			}
		}
		den[i] = d
	}
	batchInvert(den)
	for i := range den {
		den[i] = fieldMul(den[i], num)
	}
	return nil
}

// batchInvert replaces every element of v (all non-zero) by its inverse with one inversion.
func batchInvert(v []uint64) {
	if len(v) == 0 {
		return
	}
	prefix := make([]uint64, len(v))
	acc := uint64(1)
	for i, x := range v {
		prefix[i] = acc
		acc = fieldMul(acc, x)
	}
	inv := fieldInv(acc)
	for i := len(v) - 1; i >= 0; i-- {
		x := v[i]
		v[i] = fieldMul(inv, prefix[i])
		inv = fieldMul(inv, x)
	}
}

// barycentric holds, for a base set T of x-coordinates, the weights w_i = 1/Π_{j≠i}(x_i - x_j).
// From them the Lagrange coefficients at 0 of T minus one element follow in O(|T|), which makes
// reconstruction for every client of a complete graph cost O(n) each instead of O(n²).
type barycentric struct {
	xs      []uint64
	weights []uint64
}

func newBarycentric(xs []uint64) (*barycentric, error) {
	w := make([]uint64, len(xs))
	for i, xi := range xs {
		d := uint64(1)
		for j, xj := range xs {
			if j != i {
				if xj == xi {
					return nil, fmt.Errorf("shamir: duplicate x-coordinate %d", xi)
				}
				d = fieldMul(d, fieldSub(xi, xj))
			}
		}
		w[i] = d
	}
	batchInvert(w)
	return &barycentric{xs: append([]uint64(nil), xs...), weights: w}, nil
}

// lagrangeWithout writes into out (length |T|) the coefficients at 0 of the set T \ {x_skip}
// (out[skip] = 0). All x must be non-zero.
func (b *barycentric) lagrangeWithout(skip int, out []uint64) {
	// For S = T\{m}: λ_i = L(0) · w_i (x_i - x_m) / (0 - x_i), L(0) = Π_{j∈S} (0 - x_j).
	xm := b.xs[skip]
	l0 := uint64(1)
	for j, xj := range b.xs {
		if j != skip {
			l0 = fieldMul(l0, fieldP-xj)
		}
	}
	inv := out
	for i, xi := range b.xs {
		if i == skip {
			inv[i] = 1
			continue
		}
		inv[i] = fieldP - xi
	}
	batchInvert(inv)
	for i, xi := range b.xs {
		if i == skip {
			out[i] = 0
			continue
		}
		out[i] = fieldMul(fieldMul(l0, b.weights[i]), fieldMul(fieldSub(xi, xm), inv[i]))
	}
}
