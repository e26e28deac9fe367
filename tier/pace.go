package tier

import (
	"context"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Bounds of a pace-steering window: never "come back at once", never "come back tomorrow".
const (
	MinPaceWindow = time.Second
	MaxPaceWindow = time.Hour
)

// MaxPriorRound is the longest round time pace steering assumes before a round has been timed.
const MaxPriorRound = 10 * time.Second

// PriorRoundSeconds is the round time T pace steering assumes before any round has been timed:
// min(MaxPriorRound, selectionTimeout), at least MinPaceWindow. The first check-ins are a herd
// that is sent away at once, and while it is away rounds are short of devices, so each waits
// the selection timeout and starts with what it has: the cadence is then the selection timeout
// plus the round's work, and a prior no larger than the timeout does not overestimate it. An
// overestimate is what costs: the herd returns over 2·N·T/(S·D), stretched by T/cadence, and
// rounds starve meanwhile; an underestimate brings devices back early, where a full edge sends
// them away again on a window of the cadence timed by then.
func PriorRoundSeconds(selectionTimeout time.Duration) float64 {
	return min(MaxPriorRound, max(selectionTimeout, MinPaceWindow)).Seconds()
}

// PaceWindow is how long a device should stay away (Bonawitz et al. 2019, pace steering),
// computed statelessly from the population size N, the devices D a round needs and the round
// time T: if every device returns every R = N·T/D seconds on average, D of them arrive per
// round. The window is drawn uniformly from [0, 2R] and clamped to [MinPaceWindow,
// MaxPaceWindow]: devices sent away together return spread evenly from the next second on, so
// there is no thundering herd and no gap either (a window of at least R/2, as first built, left
// the rounds after the initial rush without arrivals for R/2 and short of their goal).
func PaceWindow(population, demand int, roundSeconds float64, rng *rand.Rand) time.Duration {
	if population < 1 || demand < 1 || !(roundSeconds > 0) {
		return MinPaceWindow
	}
	r := float64(population) * roundSeconds / float64(demand)
	secs := min(max(2*rng.Float64()*r, MinPaceWindow.Seconds()), MaxPaceWindow.Seconds()) // clamped before it can overflow
	return time.Duration(secs * float64(time.Second))
}

// Pacer steers one edge's devices from the coordinator's round metadata: a device arriving while
// the edge already holds its share of the demand (Slack × Demand / Edges) is told when to come
// back, and a device whose group has been summed is sent away for a window, so that others
// take its place. Windows aim arrivals at Slack × Demand per round, not Demand: devices that
// reach a full edge, or arrive just after selection, are lost to the round, so supply at
// exactly the demand leaves rounds short. Without metadata (before the first round) nobody is
// steered.
type Pacer struct {
	Slack float64
	mu    sync.Mutex
	meta  *RoundMeta
	rng   *rand.Rand
}

// NewPacer returns a pacer; slack ≤ 0 disables steering.
func NewPacer(slack float64) *Pacer {
	return &Pacer{Slack: slack, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
}

// Set replaces the round metadata the pacer steers by.
func (p *Pacer) Set(m *RoundMeta) {
	p.mu.Lock()
	p.meta = m
	p.mu.Unlock()
}

// Hold is how many devices the edge keeps connected (0: no limit).
func (p *Pacer) Hold() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Slack <= 0 || p.meta == nil || p.meta.Demand < 1 {
		return 0
	}
	return int(math.Ceil(p.Slack * float64(p.meta.Demand) / float64(max(p.meta.Edges, 1))))
}

// Window draws a come-back window (0 when steering is off).
func (p *Pacer) Window() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Slack <= 0 || p.meta == nil {
		return 0
	}
	supply := int(math.Ceil(p.Slack * float64(p.meta.Demand)))
	return PaceWindow(p.meta.Population, supply, p.meta.RoundSeconds, p.rng)
}

// Steer is grpctransport.ServerConfig.Steer: a window for a device arriving at a full edge.
func (p *Pacer) Steer(_ string, connected int) time.Duration {
	if hold := p.Hold(); hold == 0 || connected < hold {
		return 0
	}
	return p.Window()
}

// Follow keeps the pacer's metadata current from etcd until ctx ends.
func (p *Pacer) Follow(ctx context.Context, cli *clientv3.Client, k Keys, log *slog.Logger) {
	for ctx.Err() == nil {
		if m, err := LoadRoundMeta(ctx, cli, k); err == nil && m != nil {
			p.Set(m)
		} else if err != nil {
			log.Debug("round metadata", "err", err)
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		for range cli.Watch(wctx, k.Round()) {
			break
		}
		cancel()
	}
}
