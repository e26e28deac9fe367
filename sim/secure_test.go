package sim

import (
	"context"
	"math"
	"testing"

	"shoal/internal/testsupport"
)

// The engine's secure path gives the same model as the plain path when nobody drops, never
// sees an update in FitRes, and survives dropouts inside the protocol.
func TestSecureSumPathMatchesPlainSum(t *testing.T) {
	fed := federation(t, 12, 20)
	plain, p1 := engine(t, fed, Config{Seed: 4}, 0.5)
	if _, err := plain.Run(context.Background(), p1); err != nil {
		t.Fatal(err)
	}
	proto := testsupport.ClearSum{MinSurvivors: 2}
	secure, p2 := engine(t, fed, Config{Seed: 4, SecureSum: proto}, 0.5)
	secure.SecureSum = proto
	hist, err := secure.Run(context.Background(), p2)
	if err != nil {
		t.Fatal(err)
	}
	for j := range p1 {
		if math.Abs(float64(p1[j]-p2[j])) > 1e-5 {
			t.Fatalf("coordinate %d: plain %v, secure path %v", j, p1[j], p2[j])
		}
	}
	if hist[0].Participants != 6 {
		t.Fatalf("participants %d, want 6", hist[0].Participants)
	}

	// Half the clients drop at the input stage: the round goes on with the rest.
	lossy, p3 := engine(t, fed, Config{Seed: 4, SecureSum: proto, StageDropout: 0.5, DropStage: 1}, 1)
	lossy.SecureSum = proto
	hist, err = lossy.Run(context.Background(), p3)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range hist {
		if r.Participants+r.Dropped != 12 || r.Dropped == 0 || r.Abandoned != "" {
			t.Fatalf("round %d: participants %d dropped %d abandoned %q", r.Round, r.Participants, r.Dropped, r.Abandoned)
		}
	}

	// Too few survivors: the round is abandoned and the model left unchanged.
	strict := testsupport.ClearSum{MinSurvivors: 13}
	abandon, p4 := engine(t, fed, Config{Seed: 4, SecureSum: strict}, 1)
	abandon.SecureSum = strict
	before := append([]float32(nil), p4...)
	hist, err = abandon.Run(context.Background(), p4)
	if err != nil {
		t.Fatal(err)
	}
	if hist[0].Abandoned == "" || hist[0].Participants != 0 {
		t.Fatalf("round should be abandoned: %+v", hist[0])
	}
	for j := range before {
		if before[j] != p4[j] {
			t.Fatal("an abandoned round changed the model")
		}
	}
}

func TestSecureSumRefusesRobustStrategies(t *testing.T) {
	fed := federation(t, 4, 5)
	e, _ := engine(t, fed, Config{Seed: 1, SecureSum: testsupport.ClearSum{}}, 1)
	e.SecureSum = testsupport.ClearSum{}
	e.Strategy = mustStrategy(t, "fedmedian")
	if err := e.Validate(); err == nil {
		t.Fatal("median over a secure sum accepted")
	}
}
