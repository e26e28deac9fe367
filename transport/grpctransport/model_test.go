package grpctransport

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"shoal/internal/testsupport"
	shoalv1 "shoal/proto/shoal/v1"
)

var run2nn = ModelSpec{Arch: "2nn", Input: [3]int{1, 28, 28}, LayerSizes: []int{157000, 40200, 2010},
	Classes: []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}}

func TestModelSpecCheckClient(t *testing.T) {
	ok := ModelSpec{Arch: "2nn", Input: [3]int{1, 28, 28}, Classes: []string{"3", "7"}}
	if err := run2nn.CheckClient(ok); err != nil {
		t.Fatalf("a client with a subset of the classes: %v", err)
	}
	for _, tc := range []struct {
		local ModelSpec
		want  string
	}{
		{ModelSpec{Arch: "logreg", Input: [3]int{1, 28, 28}}, `model "logreg", the run trains "2nn"`},
		{ModelSpec{Arch: "2nn", Input: [3]int{1, 1, 30}}, "shape 1×1×30"},
		{ModelSpec{Arch: "2nn", Input: [3]int{1, 28, 28}, Classes: []string{"7", "cat"}}, `classes ["cat"]`},
		{ModelSpec{Arch: "2nn", Input: [3]int{1, 28, 28}, LayerSizes: []int{157000, 40200, 201}}, "layer sizes"},
	} {
		err := run2nn.CheckClient(tc.local)
		if !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want ErrIncompatible saying %q", tc.local, err, tc.want)
		}
	}
}

func TestModelSpecWireRoundTrip(t *testing.T) {
	got, err := modelSpecFrom(run2nn.proto())
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != run2nn.String() || got.NumParams() != 199210 {
		t.Fatalf("round trip: %v, want %v", got, run2nn)
	}
	if _, err := modelSpecFrom(&shoalv1.ModelSpec{Arch: "x", InputShape: []uint32{1, 2}}); err == nil {
		t.Fatal("a two-dimensional input shape was accepted")
	}
	if m, err := modelSpecFrom(nil); m != nil || err != nil {
		t.Fatalf("absent spec: %v, %v", m, err)
	}
}

// A client with another model is refused at connect time by the server (FailedPrecondition,
// counted, RunClient gives up with an error naming both models) and, when the server does not
// check, by the client itself on the Welcome; a compatible client adopts the run's model.
func TestIncompatibleModelRefusedAtConnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, ep := memServer(t, ServerConfig{Model: &run2nn})
		logreg := ModelSpec{Arch: "logreg", Input: [3]int{1, 28, 28}, Classes: []string{"1"}}
		err := RunClient(context.Background(), ClientConfig{Server: ep.target, Name: "lr", Insecure: true,
			Local: testsupport.Fixed(&testsupport.Trainer{}), MinBackoff: time.Millisecond, DialOptions: ep.dial, Model: &logreg})
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), `"logreg"`) || !strings.Contains(err.Error(), `"2nn"`) {
			t.Fatalf("logreg client against a 2nn server: %v", err)
		}
		if n := len(s.Connected()); n != 0 {
			t.Fatalf("refused client joined: %d connected", n)
		}

		// A raw Hello with an incompatible model gets FailedPrecondition.
		conn, err := grpc.NewClient(ep.target, ep.dial...)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		stream, err := shoalv1.NewFederationClient(conn).Connect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		_ = stream.Send(&shoalv1.ClientMsg{Body: &shoalv1.ClientMsg_Hello{Hello: &shoalv1.Hello{
			ProtocolVersion: ProtocolVersion, Name: "raw", Model: logreg.proto()}}})
		if _, err := stream.Recv(); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("raw hello with logreg: %v, want FailedPrecondition", err)
		}

		// A compatible client adopts the server's model (with all ten classes) and stays.
		var mu sync.Mutex
		var adopted *ModelSpec
		own := ModelSpec{Arch: "2nn", Input: [3]int{1, 28, 28}, Classes: []string{"4"}}
		testsupport.Go(t, func(ctx context.Context) error {
			return RunClient(ctx, ClientConfig{Server: ep.target, Name: "ok", Insecure: true,
				Local: testsupport.Fixed(&testsupport.Trainer{}), MinBackoff: time.Millisecond, DialOptions: ep.dial,
				Model: &own, Adopt: func(m ModelSpec) error {
					mu.Lock()
					defer mu.Unlock()
					adopted = &m
					return nil
				}})
		})
		testsupport.WaitClients(t, s, 1)
		synctest.Wait()
		mu.Lock()
		if adopted == nil || adopted.String() != run2nn.String() {
			t.Fatalf("adopted %v, want %v", adopted, run2nn)
		}
		mu.Unlock()
	})
}

// Without a server-side check (an older server, or a Hello without a model), the client
// refuses a Welcome whose model differs, or that announces none, and returns ErrIncompatible
// instead of failing every round.
func TestClientRefusesWelcomeModel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			server *ModelSpec
			adopt  func(ModelSpec) error
			want   string
		}{
			{"no model announced", nil, func(ModelSpec) error { return nil }, "announced no model"},
			{"adopt fails", &run2nn, func(ModelSpec) error { return errors.New("parameter count differs") }, "parameter count differs"},
		} {
			_, ep := memServer(t, ServerConfig{Model: tc.server})
			err := RunClient(context.Background(), ClientConfig{Server: ep.target, Name: "c", Insecure: true,
				Local: testsupport.Fixed(&testsupport.Trainer{}), MinBackoff: time.Millisecond, DialOptions: ep.dial, Adopt: tc.adopt})
			if !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v, want ErrIncompatible saying %q", tc.name, err, tc.want)
			}
		}
	})
}
