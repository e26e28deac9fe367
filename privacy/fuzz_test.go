package privacy

import (
	"encoding/json"
	"testing"
)

// FuzzRestoreAccountant: accountant state is read back from the run store; any bytes must give
// an accountant or an error, never a panic, and a restored accountant must round-trip.
func FuzzRestoreAccountant(f *testing.F) {
	f.Add([]byte(`{"accountant":"rdp","conversion":"improved","events":[{"sampling_rate":0.01,"noise_multiplier":1.1,"steps":100}]}`))
	f.Add([]byte(`{"accountant":"pld","discretization":0.0001,"events":[{"sampling_rate":1,"noise_multiplier":2,"steps":3},{"sampling_rate":0.5,"noise_multiplier":0.7,"steps":1}]}`))
	f.Add([]byte(`{"accountant":"rdp","events":[{"sampling_rate":1e-300,"noise_multiplier":1e300,"steps":1099511627776}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := RestoreAccountant(data)
		if err != nil {
			return
		}
		out, err := json.Marshal(a)
		if err != nil {
			t.Fatalf("marshal restored accountant: %v", err)
		}
		b, err := RestoreAccountant(out)
		if err != nil {
			t.Fatalf("restore of own output %s: %v", out, err)
		}
		if b.Steps() != a.Steps() || b.Kind() != a.Kind() {
			t.Fatalf("round trip changed the accountant: %s", out)
		}
	})
}

// FuzzRestoreAdaptiveClipper: same for the adaptive clipper's saved state.
func FuzzRestoreAdaptiveClipper(f *testing.F) {
	f.Add([]byte(`{"config":{"initial_clip":0.1,"target_quantile":0.5,"learning_rate":0.2,"count_stddev":5,"expected_clients":100},"clip":0.3}`))
	f.Add([]byte(`{"config":{},"clip":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := RestoreAdaptiveClipper(data)
		if err != nil {
			return
		}
		if !(a.Clip() > 0) {
			t.Fatalf("restored clip %v", a.Clip())
		}
		out, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := RestoreAdaptiveClipper(out); err != nil {
			t.Fatalf("restore of own output %s: %v", out, err)
		}
	})
}
