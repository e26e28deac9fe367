package testsupport

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Record is one log record, with its attributes (those given to Logger.With included) as
// text.
type Record struct {
	Time    time.Time
	Level   slog.Level
	Message string
	Attrs   map[string]string
}

func (r Record) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	for _, k := range slices.Sorted(maps.Keys(r.Attrs)) {
		fmt.Fprintf(&b, " %s=%s", k, r.Attrs[k])
	}
	return b.String()
}

// Recorder keeps the records of the loggers it hands out, so a test can wait for an event
// that the code under test logs ("client disconnected") instead of polling or sleeping. It
// also writes each record to the test log while the test runs.
type Recorder struct {
	tb      testing.TB
	mu      sync.Mutex
	records []Record
	changed chan struct{} // closed and replaced on every record
	over    bool          // the test has ended: no more writes to its log
}

// NewRecorder returns an empty recorder writing to tb's log until the test ends.
func NewRecorder(tb testing.TB) *Recorder {
	r := &Recorder{tb: tb, changed: make(chan struct{})}
	tb.Cleanup(func() {
		r.mu.Lock()
		r.over = true
		r.mu.Unlock()
	})
	return r
}

// Logger returns a logger, at every level down to debug, whose records r keeps.
func (r *Recorder) Logger() *slog.Logger { return slog.New(&recHandler{r: r}) }

// Records returns the records so far, oldest first.
func (r *Recorder) Records() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Record(nil), r.records...)
}

// WaitFor waits (with Patience) for a record that match accepts, among those already kept
// and those to come, and returns the first.
func (r *Recorder) WaitFor(tb testing.TB, what string, match func(Record) bool) Record {
	tb.Helper()
	timer := time.NewTimer(Patience)
	defer timer.Stop()
	seen := 0
	for {
		r.mu.Lock()
		recs, changed := r.records[seen:], r.changed
		seen = len(r.records)
		r.mu.Unlock()
		for _, rec := range recs {
			if match(rec) {
				return rec
			}
		}
		select {
		case <-changed:
		case <-timer.C:
			tb.Fatalf("no log record %s after %v", what, Patience)
		}
	}
}

// Message matches a record with the given message and, for each key-value pair in kv, that
// attribute.
func Message(msg string, kv ...string) func(Record) bool {
	return func(r Record) bool {
		if r.Message != msg {
			return false
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if r.Attrs[kv[i]] != kv[i+1] {
				return false
			}
		}
		return true
	}
}

func (r *Recorder) add(rec Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec)
	close(r.changed)
	r.changed = make(chan struct{})
	if !r.over {
		r.tb.Log(rec.String())
	}
}

type recHandler struct {
	r      *Recorder
	attrs  []slog.Attr
	groups string // "a.b." prefix of the open groups
}

func (h *recHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recHandler) Handle(_ context.Context, sr slog.Record) error {
	rec := Record{Time: sr.Time, Level: sr.Level, Message: sr.Message, Attrs: map[string]string{}}
	for _, a := range h.attrs {
		addAttr(rec.Attrs, "", a)
	}
	sr.Attrs(func(a slog.Attr) bool {
		addAttr(rec.Attrs, h.groups, a)
		return true
	})
	h.r.add(rec)
	return nil
}

func (h *recHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append([]slog.Attr(nil), h.attrs...)
	for _, a := range as {
		if h.groups != "" {
			a = slog.Attr{Key: h.groups + a.Key, Value: a.Value}
		}
		n.attrs = append(n.attrs, a)
	}
	return &n
}

func (h *recHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.groups += name + "."
	return &n
}

func addAttr(m map[string]string, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Value.Kind() == slog.KindGroup {
		for _, g := range a.Value.Group() {
			addAttr(m, prefix+a.Key+".", g)
		}
		return
	}
	m[prefix+a.Key] = a.Value.String()
}
