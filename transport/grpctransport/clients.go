package grpctransport

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"shoal/pki"
	shoalv1 "shoal/proto/shoal/v1"
)

// ClientStatus is what an operator may see of one client: its identity, its sessions, the
// rounds it took part in and why its tasks failed. It holds nothing a client sent in a task's
// result (no update, loss, example count or evaluation score): under a secure sum or DP those
// are exactly what the server must not single out.
type ClientStatus struct {
	Name string `json:"name"`
	// Serial and NotAfter are those of the certificate of the current (or last) session; empty
	// without TLS.
	Serial   string    `json:"serial,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
	// Connected says whether a session is open; ConnectedSince is when it opened (the last
	// session's start once disconnected), LastSeen the last message of the client (heartbeats
	// included).
	Connected      bool      `json:"connected"`
	ConnectedSince time.Time `json:"connected_since"`
	LastSeen       time.Time `json:"last_seen"`
	Sessions       int       `json:"sessions"`
	// RoundsJoined counts the rounds whose fit task the client completed; LastRound is the last.
	RoundsJoined int `json:"rounds_joined"`
	LastRound    int `json:"last_round,omitempty"`
	// Failures counts its failed tasks (timeouts, lost connections, errors it reported; not
	// the tasks withdrawn by over-selection); LastFailure says why the last one failed.
	Failures    int    `json:"failures"`
	LastFailure string `json:"last_failure,omitempty"`
	// Disconnected says why the last session ended (while disconnected).
	Disconnected string `json:"disconnected,omitempty"`
}

// clientBook keeps the ClientStatus of every client that ever had a session.
type clientBook struct {
	mu   sync.Mutex
	byID map[string]*ClientStatus
}

func (b *clientBook) entry(name string) *ClientStatus {
	if b.byID == nil {
		b.byID = map[string]*ClientStatus{}
	}
	c := b.byID[name]
	if c == nil {
		c = &ClientStatus{Name: name}
		b.byID[name] = c
	}
	return c
}

func (b *clientBook) joined(ss *session) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.entry(ss.name)
	c.Connected, c.ConnectedSince, c.Sessions, c.Disconnected = true, time.Now(), c.Sessions+1, ""
	c.Serial, c.NotAfter = "", time.Time{}
	if st, err := tlsState(ss.ctx); err == nil && len(st.PeerCertificates) > 0 {
		c.Serial, c.NotAfter = pki.Serial(st.PeerCertificates[0]), st.PeerCertificates[0].NotAfter
	}
}

func (b *clientBook) left(ss *session, current bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c := b.entry(ss.name); current {
		c.Connected, c.LastSeen = false, time.Unix(0, ss.lastSeen.Load())
		if ss.err != nil {
			c.Disconnected = ss.err.Error()
		}
	}
}

// answered records how a task of the client ended.
func (b *clientBook) answered(ss *session, j job, err error) {
	if ss == nil || errors.Is(err, errOverSelected) {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.entry(ss.name)
	switch {
	case err != nil:
		c.Failures++
		c.LastFailure = fmt.Sprintf("round %d, %s: %s", j.round, kindName(j.kind), truncate(err.Error(), 200))
	case j.kind == shoalv1.TaskKind_TASK_KIND_FIT:
		c.RoundsJoined++
		c.LastRound = j.round
	}
}

// Clients returns the status of every client that has had a session, connected ones first,
// then by name.
func (s *Server) Clients() []ClientStatus {
	s.mu.Lock()
	live := make(map[string]*session, len(s.sessions))
	for n, ss := range s.sessions {
		live[n] = ss
	}
	s.mu.Unlock()
	s.book.mu.Lock()
	out := make([]ClientStatus, 0, len(s.book.byID))
	for name, c := range s.book.byID {
		cs := *c
		if ss := live[name]; ss != nil {
			cs.LastSeen = time.Unix(0, ss.lastSeen.Load())
		}
		out = append(out, cs)
	}
	s.book.mu.Unlock()
	slices.SortFunc(out, func(a, b ClientStatus) int {
		if a.Connected != b.Connected {
			if a.Connected {
				return -1
			}
			return 1
		}
		return naturalCompare(a.Name, b.Name)
	})
	return out
}
