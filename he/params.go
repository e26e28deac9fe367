package he

import (
	"fmt"
	"math"
	"math/big"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/ring"
)

// Limits that bound what a decoder accepts and what the encoder packs.
const (
	minLogN = 12
	maxLogN = 15
	// maxModuli bounds the RNS chain; aggregation never needs more than a few primes.
	maxModuli = 4
	// maxLogScale keeps 2^LogScale·|value| representable by the fixed-point encoder.
	maxLogScale = 120
	// maxLogSmudging keeps the smudging sampler's 128-bit arithmetic exact.
	maxLogSmudging = 100
)

// heStandardMaxLogQ is Table 1 of the Homomorphic Encryption Standard (Albrecht et al.,
// 2018/2021), classical security, uniform ternary secret, error σ = 3.2: the largest
// log2(QP) for which the ring degree 2^logN gives the stated security.
var heStandardMaxLogQ = map[int]map[int]int{
	128: {10: 27, 11: 54, 12: 109, 13: 218, 14: 438, 15: 881},
	192: {10: 19, 11: 37, 12: 75, 13: 152, 14: 305, 15: 611},
	256: {10: 14, 11: 29, 12: 58, 13: 118, 14: 237, 15: 476},
}

// SecurityBitsFor returns the classical security level (128, 192 or 256) that the
// Homomorphic Encryption Standard gives a ring of degree 2^logN with total modulus
// of logQP bits, or 0 if the pair is below 128 bits or outside the table.
func SecurityBitsFor(logN int, logQP float64) int {
	best := 0
	for _, bits := range []int{128, 192, 256} {
		maxQ, ok := heStandardMaxLogQ[bits][logN]
		if ok && logQP <= float64(maxQ) {
			best = bits
		}
	}
	return best
}

// ParamsLiteral is an unchecked description of a parameter set; NewParams checks it.
type ParamsLiteral struct {
	// LogN is log2 of the ring degree N; one ciphertext carries N values.
	LogN int
	// LogQ gives the bit size of each NTT-friendly prime of the ciphertext modulus Q
	// (at most 60 bits each, Lattigo's limit).
	LogQ []int
	// LogScale is log2 of the fixed-point scale Δ: a value v is encoded as round(v·Δ).
	LogScale int
	// LogSmudging is log2 of the standard deviation of the smudging (noise-flooding)
	// noise each committee member adds to its decryption share.
	LogSmudging int
}

// DefaultParamsLiteral is the parameter set argued in the package documentation:
// N = 2^13, Q = two 60-bit primes (log Q ≈ 120, 192-bit security by the HE Standard),
// Δ = 2^85 and σ_smudging = 2^63.
var DefaultParamsLiteral = ParamsLiteral{LogN: 13, LogQ: []int{60, 60}, LogScale: 85, LogSmudging: 63}

// Params is a checked, immutable parameter set shared by every party of a ceremony.
type Params struct {
	logN        int
	moduli      []uint64
	logScale    int
	logSmudging int
	rlwe        rlwe.Parameters
	// Precomputations for the fixed-point encoder and the CRT decoder.
	pow2Mod     [][]uint64 // pow2Mod[j][e] = 2^e mod q_j, e ≤ 2·maxLogScale
	bredConst   [][2]uint64
	prefixMod   [][]uint64 // prefixMod[k][j] = (q_0·…·q_{j-1}) mod q_k for j ≤ k
	prefixInv   []uint64   // prefixInv[k] = (q_0·…·q_{k-1})^{-1} mod q_k
	prefixFloat []float64  // prefixFloat[k] = q_0·…·q_{k-1} as float64
	logQ        float64
}

// NewParams checks a literal and derives the Lattigo parameters. It refuses any
// parameter set below 128-bit security per the HE Standard.
func NewParams(lit ParamsLiteral) (*Params, error) {
	if lit.LogN < minLogN || lit.LogN > maxLogN {
		return nil, fmt.Errorf("he: LogN %d outside [%d, %d]", lit.LogN, minLogN, maxLogN)
	}
	if len(lit.LogQ) < 1 || len(lit.LogQ) > maxModuli {
		return nil, fmt.Errorf("he: need 1 to %d moduli, got %d", maxModuli, len(lit.LogQ))
	}
	for _, b := range lit.LogQ {
		if b < 30 || b > rlwe.MaxModuliSize {
			return nil, fmt.Errorf("he: modulus size %d bits outside [30, %d]", b, rlwe.MaxModuliSize)
		}
	}
	moduli, _, err := rlwe.GenModuli(lit.LogN+1, lit.LogQ, nil)
	if err != nil {
		return nil, fmt.Errorf("he: generating moduli: %w", err)
	}
	return newParams(lit.LogN, moduli, lit.LogScale, lit.LogSmudging)
}

// DefaultParams returns the checked DefaultParamsLiteral.
func DefaultParams() *Params {
	p, err := NewParams(DefaultParamsLiteral)
	if err != nil {
		panic(fmt.Sprintf("he: default parameters invalid: %v", err)) // a programming error, not input
	}
	return p
}

func newParams(logN int, moduli []uint64, logScale, logSmudging int) (*Params, error) {
	if logN < minLogN || logN > maxLogN {
		return nil, fmt.Errorf("he: LogN %d outside [%d, %d]", logN, minLogN, maxLogN)
	}
	if len(moduli) < 1 || len(moduli) > maxModuli {
		return nil, fmt.Errorf("he: need 1 to %d moduli, got %d", maxModuli, len(moduli))
	}
	if logScale < 1 || logScale > maxLogScale {
		return nil, fmt.Errorf("he: LogScale %d outside [1, %d]", logScale, maxLogScale)
	}
	if logSmudging < 0 || logSmudging > maxLogSmudging {
		return nil, fmt.Errorf("he: LogSmudging %d outside [0, %d]", logSmudging, maxLogSmudging)
	}
	seen := make(map[uint64]bool, len(moduli))
	logQ := 0.0
	for _, q := range moduli {
		if q < 1<<29 || q >= 1<<rlwe.MaxModuliSize {
			return nil, fmt.Errorf("he: modulus %d outside [2^29, 2^%d)", q, rlwe.MaxModuliSize)
		}
		if q%(2<<logN) != 1 {
			return nil, fmt.Errorf("he: modulus %d is not 1 mod 2N", q)
		}
		if !new(big.Int).SetUint64(q).ProbablyPrime(20) {
			return nil, fmt.Errorf("he: modulus %d is not prime", q)
		}
		if seen[q] {
			return nil, fmt.Errorf("he: modulus %d repeated", q)
		}
		seen[q] = true
		logQ += math.Log2(float64(q))
	}
	if SecurityBitsFor(logN, logQ) < 128 {
		return nil, fmt.Errorf("he: log QP = %.1f is too large for 128-bit security at N = 2^%d (HE Standard allows %d)",
			logQ, logN, heStandardMaxLogQ[128][logN])
	}
	// Smudging noise plus headroom for 2^20 of it summed must stay well below Q/Δ's
	// room; otherwise decryption wraps. Require Q > 2^(LogScale + 8) and
	// Q > 2^(LogSmudging + 16) so the capacity is positive.
	if float64(logScale)+8 > logQ || float64(logSmudging)+16 > logQ {
		return nil, fmt.Errorf("he: log Q = %.1f leaves no room for scale 2^%d and smudging 2^%d", logQ, logScale, logSmudging)
	}

	rp, err := rlwe.NewParametersFromLiteral(rlwe.ParametersLiteral{
		LogN:    logN,
		Q:       moduli,
		Xs:      ring.Ternary{P: 2.0 / 3.0}, // uniform ternary, as the HE Standard table assumes
		Xe:      rlwe.DefaultXe,             // σ = 3.2
		NTTFlag: false,                      // coefficient encoding: ciphertexts stay in the coefficient domain
	})
	if err != nil {
		return nil, fmt.Errorf("he: lattigo parameters: %w", err)
	}

	p := &Params{
		logN:        logN,
		moduli:      append([]uint64(nil), moduli...),
		logScale:    logScale,
		logSmudging: logSmudging,
		rlwe:        rp,
		logQ:        logQ,
	}
	ringQ := rp.RingQ()
	L := len(moduli)
	p.pow2Mod = make([][]uint64, L)
	p.bredConst = make([][2]uint64, L)
	for j, q := range moduli {
		p.bredConst[j] = ringQ.SubRings[j].BRedConstant
		pw := make([]uint64, 2*maxLogScale+1)
		pw[0] = 1 % q
		for e := 1; e < len(pw); e++ {
			pw[e] = (pw[e-1] << 1) % q // pw < 2^60, so the shift cannot overflow
		}
		p.pow2Mod[j] = pw
	}
	p.prefixMod = make([][]uint64, L)
	p.prefixInv = make([]uint64, L)
	p.prefixFloat = make([]float64, L)
	prod := big.NewInt(1)
	for k := 0; k < L; k++ {
		qk := new(big.Int).SetUint64(moduli[k])
		p.prefixFloat[k], _ = new(big.Float).SetInt(prod).Float64()
		p.prefixMod[k] = make([]uint64, k+1)
		partial := big.NewInt(1)
		for j := 0; j <= k; j++ {
			p.prefixMod[k][j] = new(big.Int).Mod(partial, qk).Uint64()
			if j < k {
				partial.Mul(partial, new(big.Int).SetUint64(moduli[j]))
			}
		}
		inv := new(big.Int).ModInverse(new(big.Int).Mod(prod, qk), qk)
		if inv == nil {
			return nil, fmt.Errorf("he: moduli are not coprime")
		}
		p.prefixInv[k] = inv.Uint64()
		prod.Mul(prod, qk)
	}
	return p, nil
}

// N returns the ring degree, which is the number of values one ciphertext carries.
func (p *Params) N() int { return 1 << p.logN }

// LogN returns log2 of the ring degree.
func (p *Params) LogN() int { return p.logN }

// LogQP returns log2 of the total modulus (there is no auxiliary modulus P).
func (p *Params) LogQP() float64 { return p.logQ }

// Moduli returns a copy of the RNS primes.
func (p *Params) Moduli() []uint64 { return append([]uint64(nil), p.moduli...) }

// LogScale returns log2 of the fixed-point scale Δ.
func (p *Params) LogScale() int { return p.logScale }

// LogSmudging returns log2 of the smudging noise standard deviation.
func (p *Params) LogSmudging() int { return p.logSmudging }

// SecurityBits returns the HE Standard security level of the parameter set.
func (p *Params) SecurityBits() int { return SecurityBitsFor(p.logN, p.logQ) }

// Capacity is the largest |Σ w_i·x_i| (per coordinate, and for the total weight) that
// decrypts correctly: Q/2 less generous room for the noise, divided by Δ.
func (p *Params) Capacity() float64 {
	// Noise room: 2^(LogSmudging + 16) covers 7·σ·√t for t up to 2^12 members.
	usable := math.Exp2(p.logQ-1) - math.Exp2(float64(p.logSmudging+16))
	return usable / math.Exp2(float64(p.logScale))
}

// CiphertextsFor returns how many ciphertexts carry an update of dim values plus its weight.
func (p *Params) CiphertextsFor(dim int) int {
	n := p.N()
	return (dim + 1 + n - 1) / n
}

// CiphertextBytes is the serialised size of one ciphertext (two polynomials).
func (p *Params) CiphertextBytes() int { return 2 * p.polyBytes() }

func (p *Params) polyBytes() int { return 8 + len(p.moduli)*(8+8*p.N()) }

// MaxAbsError bounds the absolute error on a decrypted coordinate of the weighted sum
// (and on the total weight) when threshold members each add smudging noise: 7 standard
// deviations of the summed noise, divided by Δ. A coordinate exceeds it with probability
// 2.6·10⁻¹², so even a 10⁸-value update stays within it except with probability 3·10⁻⁴.
func (p *Params) MaxAbsError(threshold int) float64 {
	return 7 * math.Exp2(float64(p.logSmudging-p.logScale)) * math.Sqrt(float64(threshold))
}

// FreshNoiseStd estimates the standard deviation of one coefficient of the noise of a
// fresh encryption under a collective key of a committee of size committee:
// e = u·e_pk + e_0 + e_1·s with u, s_i uniform ternary and e, e_i of σ = 3.2.
func (p *Params) FreshNoiseStd(committee int) float64 {
	sigma := rlwe.DefaultNoise
	h := 2.0 / 3.0 * float64(p.N()) // expected Hamming weight of a uniform ternary polynomial
	k := float64(committee)
	return math.Sqrt(sigma * sigma * (2*h*k + 1))
}

// SmudgingSecurityBits returns −log2 of the statistical distance bound between the
// decryption transcript of one aggregate and one simulated without the secret key,
// for an aggregate of clients fresh encryptions of a dim-value update under the key of
// a committee of size committee. See the package documentation for the argument:
// SD ≤ ‖e_ct‖₂ / (σ_smudging·√(2π)), with ‖e_ct‖₂ bounded by 1.2·σ_ct·√(C·N).
func (p *Params) SmudgingSecurityBits(clients, committee, dim int) float64 {
	if clients < 1 || committee < 1 || dim < 0 {
		return 0
	}
	sigmaCt := p.FreshNoiseStd(committee) * math.Sqrt(float64(clients))
	coeffs := float64(p.CiphertextsFor(dim) * p.N())
	norm := 1.2 * sigmaCt * math.Sqrt(coeffs)
	return math.Log2(math.Exp2(float64(p.logSmudging))*math.Sqrt(2*math.Pi)) - math.Log2(norm)
}

// String describes the parameter set for reports.
func (p *Params) String() string {
	return fmt.Sprintf("RLWE/CKKS coefficient encoding: N=2^%d, log QP=%.1f (%d primes), Δ=2^%d, σ_smudging=2^%d, %d-bit security (HE Standard)",
		p.logN, p.logQ, len(p.moduli), p.logScale, p.logSmudging, p.SecurityBits())
}

// Equal reports whether two parameter sets are identical.
func (p *Params) Equal(o *Params) bool {
	if p == nil || o == nil {
		return p == o
	}
	if p.logN != o.logN || p.logScale != o.logScale || p.logSmudging != o.logSmudging || len(p.moduli) != len(o.moduli) {
		return false
	}
	for i := range p.moduli {
		if p.moduli[i] != o.moduli[i] {
			return false
		}
	}
	return true
}
