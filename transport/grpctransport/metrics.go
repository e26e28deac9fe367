package grpctransport

import (
	"fmt"
	"net"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"shoal/fl"
)

// Metrics are the server's Prometheus series. A nil *Metrics records nothing.
type Metrics struct {
	rounds, abandoned, participants, dropouts prometheus.Counter
	lastParticipants, connected               prometheus.Gauge
	round, roundsPlanned, roundSeconds        prometheus.Gauge
	accuracy, loss                            prometheus.Gauge
	epsilon, epsilonBudget                    prometheus.Gauge
	stageSeconds                              *prometheus.HistogramVec
	tasks                                     *prometheus.CounterVec
	refused                                   *prometheus.CounterVec
	bytesIn, bytesOut                         prometheus.Counter
	wireIn, wireOut                           atomic.Uint64 // the same bytes, readable in-process
}

// NewMetrics creates the series and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		rounds:           prometheus.NewCounter(prometheus.CounterOpts{Name: "shoal_rounds_total", Help: "Rounds completed."}),
		abandoned:        prometheus.NewCounter(prometheus.CounterOpts{Name: "shoal_rounds_abandoned_total", Help: "Rounds that left the model unchanged."}),
		participants:     prometheus.NewCounter(prometheus.CounterOpts{Name: "shoal_participants_total", Help: "Client updates aggregated, over all rounds."}),
		dropouts:         prometheus.NewCounter(prometheus.CounterOpts{Name: "shoal_dropouts_total", Help: "Sampled clients left out of their round (failed, late, disconnected, over-selected)."}),
		lastParticipants: prometheus.NewGauge(prometheus.GaugeOpts{Name: "shoal_round_participants", Help: "Clients aggregated in the last round."}),
		connected:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "shoal_connected_clients", Help: "Clients with an open session."}),
		round:            prometheus.NewGauge(prometheus.GaugeOpts{Name: "shoal_round", Help: "The last completed round (0: none yet)."}),
		roundsPlanned:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "shoal_rounds_planned", Help: "Rounds the run is configured for (--rounds; it may stop earlier)."}),
		roundSeconds:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "shoal_round_seconds", Help: "Duration of the last completed round."}),
		accuracy:         prometheus.NewGauge(prometheus.GaugeOpts{Name: "shoal_test_accuracy", Help: "Central test accuracy after the last completed round."}),
		loss:             prometheus.NewGauge(prometheus.GaugeOpts{Name: "shoal_test_loss", Help: "Central test loss after the last completed round."}),
		epsilon:          prometheus.NewGauge(prometheus.GaugeOpts{Name: "shoal_epsilon_spent", Help: "DP: ε spent so far (at the run's δ; 0 without DP)."}),
		epsilonBudget:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "shoal_epsilon_budget", Help: "DP: the ε the run stops at (--max-epsilon; 0: no budget)."}),
		stageSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "shoal_stage_seconds", Help: "Latency of a round's stages.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 16)}, []string{"stage"}),
		tasks:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shoal_tasks_total", Help: "Tasks sent to clients, by kind and outcome."}, []string{"kind", "outcome"}),
		refused:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shoal_refused_total", Help: "TLS handshakes, sessions and messages refused, by reason."}, []string{"reason"}),
		bytesIn:  prometheus.NewCounter(prometheus.CounterOpts{Name: "shoal_bytes_in_total", Help: "Bytes received on client connections (TLS and HTTP/2 framing included)."}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{Name: "shoal_bytes_out_total", Help: "Bytes sent on client connections (TLS and HTTP/2 framing included)."}),
	}
	for _, c := range []prometheus.Collector{m.rounds, m.abandoned, m.participants, m.dropouts, m.lastParticipants,
		m.connected, m.stageSeconds, m.tasks, m.refused, m.bytesIn, m.bytesOut, m.round, m.roundsPlanned, m.roundSeconds,
		m.accuracy, m.loss, m.epsilon, m.epsilonBudget} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

// ObserveRound records a finished round.
func (m *Metrics) ObserveRound(r fl.RoundReport) {
	if m == nil {
		return
	}
	m.rounds.Inc()
	if r.Abandoned != "" {
		m.abandoned.Inc()
	}
	m.participants.Add(float64(r.Participants))
	m.dropouts.Add(float64(r.Dropped))
	m.lastParticipants.Set(float64(r.Participants))
	m.SetLastRound(r)
}

// SetPlan records the run's configured rounds and privacy budget (0: none).
func (m *Metrics) SetPlan(rounds int, epsilonBudget float64) {
	if m == nil {
		return
	}
	m.roundsPlanned.Set(float64(rounds))
	m.epsilonBudget.Set(epsilonBudget)
}

// SetLastRound sets the gauges of the last completed round (a resumed run's last stored round
// included) without counting it.
func (m *Metrics) SetLastRound(r fl.RoundReport) {
	if m == nil {
		return
	}
	m.round.Set(float64(r.Round))
	m.roundSeconds.Set(r.Seconds)
	m.accuracy.Set(r.Accuracy)
	m.loss.Set(r.Loss)
	m.epsilon.Set(r.Epsilon)
}

// WireBytes returns the bytes received and sent on the connections of a listener wrapped by
// CountingListener.
func (m *Metrics) WireBytes() (in, out uint64) {
	if m == nil {
		return 0, 0
	}
	return m.wireIn.Load(), m.wireOut.Load()
}

func (m *Metrics) stage(name string, seconds float64) {
	if m != nil {
		m.stageSeconds.WithLabelValues(name).Observe(seconds)
	}
}

func (m *Metrics) task(kind, outcome string) {
	if m != nil {
		m.tasks.WithLabelValues(kind, outcome).Inc()
	}
}

func (m *Metrics) refuse(reason string) {
	if m != nil {
		m.refused.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) connectedDelta(d float64) {
	if m != nil {
		m.connected.Add(d)
	}
}

// CountingListener wraps l so that every byte read from and written to its connections is
// counted (bytes on the wire, encryption and framing included).
func (m *Metrics) CountingListener(l net.Listener) net.Listener {
	if m == nil {
		return l
	}
	return countingListener{Listener: l, m: m}
}

type countingListener struct {
	net.Listener
	m *Metrics
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, m: l.m}, nil
}

type countingConn struct {
	net.Conn
	m *Metrics
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.m.wireIn.Add(uint64(n))
		c.m.bytesIn.Add(float64(n))
	}
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.m.wireOut.Add(uint64(n))
		c.m.bytesOut.Add(float64(n))
	}
	return n, err
}
