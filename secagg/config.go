package secagg

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
)

// ClientID is a client's position in the round's cohort, 0 ≤ id < Config.Clients. Its Shamir
// x-coordinate is id+1.
type ClientID = uint32

// GraphKind says who masks with whom.
type GraphKind uint8

const (
	// GraphComplete pairs every client with every other (Bonawitz et al. 2017).
	GraphComplete GraphKind = 1
	// GraphHarary pairs each client with Degree neighbours on a Harary graph H(Degree, n) whose
	// vertices are randomly permuted from Config.GraphSeed (SecAgg+, Bell et al. 2020).
	GraphHarary GraphKind = 2
)

func (g GraphKind) String() string {
	switch g {
	case GraphComplete:
		return "complete"
	case GraphHarary:
		return "harary"
	}
	return fmt.Sprintf("GraphKind(%d)", uint8(g))
}

// Limits of a round; decoders and constructors reject anything beyond them.
const (
	MaxClients = 1 << 16
	MaxDim     = 1 << 26
)

// Config is the public description of one round, identical at the server and every client.
type Config struct {
	Round     uint64    // round number; bound into every message and derived key
	Clients   int       // cohort size n; clients are 0..n-1
	Dim       int       // entries per update (the weight is one more coordinate)
	Bits      int       // b: quantisation bits per entry; RingBits() = b + ceil(log2 n) ≤ 32
	ClipRange float64   // entries are clipped to [-ClipRange, ClipRange]
	MaxWeight float64   // weights are clipped to [0, MaxWeight] and quantised to Bits bits
	Graph     GraphKind // GraphComplete or GraphHarary
	Degree    int       // neighbours per client: n-1 for the complete graph, even for Harary
	Threshold int       // t: shares of a client's secret needed to reconstruct it, 1 ≤ t ≤ Degree
	GraphSeed [32]byte  // public randomness that permutes the Harary graph

	// RunID identifies the run (16 random bytes chosen by the server once per run). It is bound
	// into every signature, every derived key and every seed commitment, so that a transcript of
	// one run is worthless in another even when both reach the same round number.
	RunID [16]byte

	// NormDim is how many leading entries of the update conditional rounding bounds in L2 norm
	// (0: all Dim entries); see NormBound. Entries after it (an adapter's side channel, such as
	// a count) are rounded the same way but do not count toward the norm.
	NormDim int

	// VerifyKeys, when set (one Ed25519 key per client, from a PKI), selects the variant secure
	// against a malicious server: AdvertiseKeys are signed and the ConsistencyCheck stage runs.
	VerifyKeys []ed25519.PublicKey
}

// RingBits returns k = Bits + ceil(log2 Clients): sums of n values of Bits bits never wrap mod 2^k.
func (c *Config) RingBits() int {
	return c.Bits + bits.Len(uint(c.Clients-1))
}

// Malicious reports whether the malicious-server variant (signatures, ConsistencyCheck) runs.
func (c *Config) Malicious() bool { return c.VerifyKeys != nil }

// Validate checks the configuration.
func (c *Config) Validate() error {
	n := c.Clients
	switch {
	case n < 2 || n > MaxClients:
		return fmt.Errorf("secagg config: clients %d out of range [2, %d]", n, MaxClients)
	case c.Dim < 1 || c.Dim > MaxDim:
		return fmt.Errorf("secagg config: dim %d out of range [1, %d]", c.Dim, MaxDim)
	case c.Bits < 1:
		return fmt.Errorf("secagg config: bits %d < 1", c.Bits)
	case c.RingBits() > 32:
		return fmt.Errorf("secagg config: ring bits %d + ceil(log2 %d) = %d exceed 32", c.Bits, n, c.RingBits())
	case !(c.ClipRange > 0) || math.IsInf(c.ClipRange, 0):
		return fmt.Errorf("secagg config: clip range %v must be finite and > 0", c.ClipRange)
	case !(c.MaxWeight > 0) || math.IsInf(c.MaxWeight, 0):
		return fmt.Errorf("secagg config: max weight %v must be finite and > 0", c.MaxWeight)
	case c.NormDim < 0 || c.NormDim > c.Dim:
		return fmt.Errorf("secagg config: norm dim %d out of range [0, dim %d]", c.NormDim, c.Dim)
	}
	switch c.Graph {
	case GraphComplete:
		if c.Degree != n-1 {
			return fmt.Errorf("secagg config: complete graph of %d clients has degree %d, not %d", n, n-1, c.Degree)
		}
	case GraphHarary:
		if c.Degree < 2 || c.Degree > n-1 || (c.Degree%2 != 0 && c.Degree != n-1) {
			return fmt.Errorf("secagg config: Harary degree %d must be even and in [2, %d]", c.Degree, n-1)
		}
	default:
		return fmt.Errorf("secagg config: unknown graph %v", c.Graph)
	}
	if c.Threshold < 1 || c.Threshold > c.Degree {
		return fmt.Errorf("secagg config: threshold %d out of range [1, degree %d]", c.Threshold, c.Degree)
	}
	if c.VerifyKeys != nil {
		if len(c.VerifyKeys) != n {
			return fmt.Errorf("secagg config: %d verify keys for %d clients", len(c.VerifyKeys), n)
		}
		for i, k := range c.VerifyKeys {
			if len(k) != ed25519.PublicKeySize {
				return fmt.Errorf("secagg config: verify key of client %d has %d bytes", i, len(k))
			}
		}
	}
	return nil
}

// graph is the masking graph of a round: who shares secrets with and masks against whom.
type graph struct {
	n, degree int
	complete  bool
	order     []uint32 // order[p] is the client at position p of the Harary ring
	pos       []uint32 // pos[u] is the position of client u
}

func newGraph(c *Config) *graph {
	g := &graph{n: c.Clients, degree: c.Degree, complete: c.Graph == GraphComplete || c.Degree == c.Clients-1}
	if g.complete {
		return g
	}
	// Fisher–Yates with ChaCha8 (a specified stream) and rejection sampling, so every party
	// derives the same permutation from the public seed on any platform and Go version.
	src := rand.NewChaCha8(c.GraphSeed)
	g.order = make([]uint32, g.n)
	for i := range g.order {
		g.order[i] = uint32(i)
	}
	for i := g.n - 1; i > 0; i-- {
		j := uniformBelow(src, uint64(i+1))
		g.order[i], g.order[j] = g.order[j], g.order[i]
	}
	g.pos = make([]uint32, g.n)
	for p, u := range g.order {
		g.pos[u] = uint32(p)
	}
	return g
}

func uniformBelow(src *rand.ChaCha8, bound uint64) uint64 {
	limit := math.MaxUint64 - math.MaxUint64%bound
	for {
		if v := src.Uint64(); v < limit {
			return v % bound
		}
	}
}

// neighbours returns the sorted neighbours of u (never u itself).
func (g *graph) neighbours(u uint32) []uint32 {
	if g.complete {
		out := make([]uint32, 0, g.n-1)
		for v := range uint32(g.n) {
			if v != u {
				out = append(out, v)
			}
		}
		return out
	}
	out := make([]uint32, 0, g.degree)
	p := int(g.pos[u])
	for j := 1; j <= g.degree/2; j++ {
		out = append(out, g.order[(p+j)%g.n], g.order[(p-j+g.n)%g.n])
	}
	slices.Sort(out)
	return out
}

// isNeighbour reports whether u and v are adjacent.
func (g *graph) isNeighbour(u, v uint32) bool {
	if u == v {
		return false
	}
	if g.complete {
		return true
	}
	d := int(g.pos[u]) - int(g.pos[v])
	if d < 0 {
		d = -d
	}
	d = min(d, g.n-d)
	return d <= g.degree/2
}

// StatisticalSecurity is σ: parameters are chosen so that, by a union bound over all clients,
// the round fails or leaks with probability at most 2^-σ.
const StatisticalSecurity = 40

// PlanGraph chooses the degree and threshold for n clients tolerating a fraction maxDropout of
// them dropping out at any time during the round and a fraction maxCorrupt colluding with the
// server.
//
// For the complete graph it is worst-case: t = n-1-⌊δn⌋ (every surviving client keeps enough
// share holders), and security needs t > ⌊γn⌋ (semi-honest) or 2t > n-1+⌊γn⌋ (malicious server:
// honest clients split between two views must not hand out t shares of both secrets).
//
// For the Harary graph, whose vertices are randomly permuted, the dropped and the corrupted
// neighbours of a client are hypergeometric; PlanGraph returns the smallest even degree k with a
// threshold t such that n·P[dropped neighbours > k-t] ≤ 2^-40 and n·P[corrupt neighbours ≥ t]
// ≤ 2^-40 (semi-honest; malicious: ≥ 2t-k), and no client has only corrupt or dropped
// neighbours except with probability 2^-40 (an isolated client's input would be exposed; the
// full connectivity argument for random Harary graphs is Bell et al.'s). It falls back to the
// complete graph when no smaller degree works. AssessGraph makes the same checks for a given
// degree and threshold and reports the probabilities.
func PlanGraph(n int, maxDropout, maxCorrupt float64, kind GraphKind, malicious bool) (degree, threshold int, err error) {
	if n < 2 || n > MaxClients {
		return 0, 0, fmt.Errorf("plan graph: clients %d out of range [2, %d]", n, MaxClients)
	}
	if !(maxDropout >= 0 && maxDropout < 1) || !(maxCorrupt >= 0 && maxCorrupt < 1) {
		return 0, 0, fmt.Errorf("plan graph: dropout %v and corruption %v must be in [0, 1)", maxDropout, maxCorrupt)
	}
	dropped := int(math.Floor(maxDropout * float64(n)))
	corrupt := int(math.Floor(maxCorrupt * float64(n)))
	if kind == GraphHarary {
		for k := 2; k < n-1; k += 2 {
			t := correctnessThreshold(n, k, dropped, false)
			if t < 1 {
				continue
			}
			if assess(n, k, t, dropped, corrupt, false, malicious).Secure() {
				return k, t, nil
			}
		}
	} else if kind != GraphComplete {
		return 0, 0, fmt.Errorf("plan graph: unknown graph %v", kind)
	}
	k := n - 1
	t := correctnessThreshold(n, k, dropped, true)
	if t < 1 || !assess(n, k, t, dropped, corrupt, true, malicious).Secure() {
		return 0, 0, fmt.Errorf("plan graph: no threshold for %d clients tolerates %.0f%% dropout and %.0f%% corruption (malicious=%v)",
			n, 100*maxDropout, 100*maxCorrupt, malicious)
	}
	return k, t, nil
}

// GraphRisk is what a masking graph of a given degree and threshold achieves for a round of n
// clients of which ⌊maxDropout·n⌋ drop out and ⌊maxCorrupt·n⌋ collude with the server. The
// probabilities are per client, over the random permutation of the Harary graph (0 or 1 for
// the complete graph, whose analysis is worst-case); each is also the expected fraction of
// clients it happens to.
type GraphRisk struct {
	Clients, Degree, Threshold int
	Dropped, Corrupt           int // ⌊maxDropout·n⌋ and ⌊maxCorrupt·n⌋
	Complete, Malicious        bool
	// Unrecoverable: more than Degree−Threshold of the client's neighbours drop, so its masks
	// cannot be removed and the round is abandoned (correctness, not privacy).
	Unrecoverable float64
	// Exposed: at least Threshold (malicious server: 2·Threshold−Degree) of its neighbours are
	// corrupt, so the server can reconstruct both of its secrets and unmask its input.
	Exposed float64
	// Isolated: every neighbour is corrupt or dropped, so its input is exposed.
	Isolated float64
	// SecurityBits is σ such that the union bound over the n clients, n·max(Unrecoverable,
	// Exposed, Isolated), is 2^-σ; +Inf when all three are 0, 0 or less when a failure is
	// expected.
	SecurityBits float64

	logWorst float64 // log max(Unrecoverable, Exposed, Isolated)
}

// Secure reports whether the parameters meet the StatisticalSecurity target (what PlanGraph
// requires of the degree and threshold it returns).
func (r GraphRisk) Secure() bool { return r.Clients > 0 && r.logWorst <= logBudget(r.Clients) }

// String describes the risk in one line.
func (r GraphRisk) String() string {
	what := fmt.Sprintf("%d clients, degree %d, threshold %d, %d dropped, %d corrupt", r.Clients, r.Degree, r.Threshold, r.Dropped, r.Corrupt)
	if r.Secure() {
		if math.IsInf(r.SecurityBits, 1) {
			return what + ": secure (worst case)"
		}
		return fmt.Sprintf("%s: %.0f-bit statistical security", what, r.SecurityBits)
	}
	return fmt.Sprintf("%s: each client is exposed to the server with probability %.3g (at least %d corrupt neighbours), "+
		"isolated with probability %.3g and unrecoverable with probability %.3g; union bound over the cohort %.3g bits",
		what, r.Exposed, r.exposedAt(), r.Isolated, r.Unrecoverable, r.SecurityBits)
}

func (r GraphRisk) exposedAt() int {
	if r.Malicious {
		return 2*r.Threshold - r.Degree
	}
	return r.Threshold
}

// AssessGraph checks a degree and threshold against the dropout and corruption bounds, with the
// checks PlanGraph makes (so a forced degree can be held to the same standard), and returns the
// probabilities. A degree of n−1 is the complete graph whatever kind says.
func AssessGraph(n, degree, threshold int, maxDropout, maxCorrupt float64, kind GraphKind, malicious bool) (GraphRisk, error) {
	if n < 2 || n > MaxClients || degree < 1 || degree > n-1 {
		return GraphRisk{}, fmt.Errorf("assess graph: degree %d of %d clients out of range", degree, n)
	}
	if threshold < 1 || threshold > degree {
		return GraphRisk{}, fmt.Errorf("assess graph: threshold %d out of range [1, degree %d]", threshold, degree)
	}
	if !(maxDropout >= 0 && maxDropout < 1) || !(maxCorrupt >= 0 && maxCorrupt < 1) {
		return GraphRisk{}, fmt.Errorf("assess graph: dropout %v and corruption %v must be in [0, 1)", maxDropout, maxCorrupt)
	}
	if kind != GraphComplete && kind != GraphHarary {
		return GraphRisk{}, fmt.Errorf("assess graph: unknown graph %v", kind)
	}
	dropped := int(math.Floor(maxDropout * float64(n)))
	corrupt := int(math.Floor(maxCorrupt * float64(n)))
	return assess(n, degree, threshold, dropped, corrupt, kind == GraphComplete || degree == n-1, malicious), nil
}

// assess computes the GraphRisk of valid parameters.
func assess(n, k, t, dropped, corrupt int, complete, malicious bool) GraphRisk {
	r := GraphRisk{Clients: n, Degree: k, Threshold: t, Dropped: dropped, Corrupt: corrupt,
		Complete: complete || k >= n-1, Malicious: malicious}
	cMin := r.exposedAt() // corrupt neighbours that break security
	var logU, logE, logI float64
	if r.Complete {
		// Worst case: every dropped and every corrupt client is a neighbour.
		indicator := func(b bool) float64 {
			if b {
				return 0 // log 1
			}
			return math.Inf(-1)
		}
		logU = indicator(dropped > k-t)
		logE = indicator(corrupt >= cMin)
		logI = indicator(dropped+corrupt >= k)
	} else {
		logU = hypergeomLogTail(n-1, dropped, k, k-t+1)
		logE = 0
		if cMin >= 1 {
			logE = hypergeomLogTail(n-1, corrupt, k, cMin)
		}
		logI = hypergeomLogTail(n-1, min(dropped+corrupt, n-1), k, k)
	}
	r.Unrecoverable, r.Exposed, r.Isolated = math.Exp(logU), math.Exp(logE), math.Exp(logI)
	worst := max(logU, logE, logI)
	r.logWorst = worst
	r.SecurityBits = -(worst + math.Log(float64(n))) / math.Ln2
	return r
}

// logBudget is log(2^-σ / n): the per-client failure probability allowed by the union bound.
func logBudget(n int) float64 {
	return -StatisticalSecurity*math.Ln2 - math.Log(float64(n))
}

// correctnessThreshold returns the largest threshold t such that every client keeps at least t
// surviving neighbours when `dropped` of the n clients drop: always for the complete graph, and
// except with probability 2^-σ (union bound over clients) for a random Harary graph of degree k.
func correctnessThreshold(n, k int, dropped int, complete bool) int {
	if complete || k >= n-1 {
		return n - 1 - dropped
	}
	d := 0
	for ; d <= k; d++ {
		if hypergeomLogTail(n-1, dropped, k, d+1) <= logBudget(n) {
			break
		}
	}
	return k - d
}

// PlanThreshold returns the threshold for a forced degree (for like-for-like comparisons): the
// largest t that keeps every client reconstructible with a fraction maxDropout of the n clients
// dropping (see PlanGraph). It does not check security against corrupted clients: AssessGraph
// does.
func PlanThreshold(n, degree int, maxDropout float64, kind GraphKind) (int, error) {
	if n < 2 || n > MaxClients || degree < 1 || degree > n-1 {
		return 0, fmt.Errorf("plan threshold: degree %d of %d clients out of range", degree, n)
	}
	if !(maxDropout >= 0 && maxDropout < 1) {
		return 0, fmt.Errorf("plan threshold: dropout %v not in [0, 1)", maxDropout)
	}
	t := correctnessThreshold(n, degree, int(math.Floor(maxDropout*float64(n))), kind == GraphComplete)
	if t < 1 {
		return 0, fmt.Errorf("plan threshold: degree %d cannot tolerate %.0f%% dropout of %d clients", degree, 100*maxDropout, n)
	}
	return t, nil
}

// hypergeomLogTail returns log P[X ≥ x] for X ~ Hypergeometric(population N, K marked, m draws).
func hypergeomLogTail(N, K, m, x int) float64 {
	hi := min(K, m)
	if x > hi {
		return math.Inf(-1)
	}
	lo := max(x, 0, m-(N-K))
	logDen := logChoose(N, m)
	// log-sum-exp over the tail.
	terms := make([]float64, 0, hi-lo+1)
	best := math.Inf(-1)
	for i := lo; i <= hi; i++ {
		v := logChoose(K, i) + logChoose(N-K, m-i) - logDen
		terms = append(terms, v)
		best = max(best, v)
	}
	if math.IsInf(best, -1) {
		return best
	}
	s := 0.0
	for _, v := range terms {
		s += math.Exp(v - best)
	}
	return best + math.Log(s)
}

func logChoose(n, k int) float64 {
	if k < 0 || k > n {
		return math.Inf(-1)
	}
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}

var errNotNeighbour = errors.New("not a neighbour in the masking graph")

// putUint32s appends ids big-endian; used for signed transcripts.
func putUint32s(dst []byte, ids []uint32) []byte {
	for _, id := range ids {
		dst = binary.BigEndian.AppendUint32(dst, id)
	}
	return dst
}
