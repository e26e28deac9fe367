package he

import (
	"runtime"
	"testing"
	"time"
)

// BenchmarkDecryptBreakdown2NN splits one T = 3 decryption of the 2NN aggregate of three
// uploads into its phases (CPU ms per phase, summed over the three members where per member;
// the share includes the member's checks of the request).
func BenchmarkDecryptBreakdown2NN(b *testing.B) {
	f := bench2NN(b)
	active := f.setup.Ceremony.Committee[:3]
	var parts [6]time.Duration
	var shareBuf []byte
	for b.Loop() {
		a := newTestAggregator(b, f.setup, 1, dim2NN)
		for _, buf := range f.uploads[:3] {
			a.AddEncoded(buf)
		}
		decs := approveAll(b, a, f.keys, f.setup.Ceremony.Committee[:4])
		runtime.GC()
		t := cpuTime()
		lap := func(i int) { n := cpuTime(); parts[i] += n - t; t = n }
		req, _ := a.DecryptRequest(active)
		rb, _ := req.MarshalBinary()
		lap(0)
		for _, id := range active {
			d := decs[id]
			lap(2)
			s, _ := d.ShareEncoded(rb) // decoding the request is part of the share here
			lap(3)
			shareBuf, _ = s.AppendBinary(shareBuf[:0])
			a.AddShareEncoded(shareBuf)
			lap(4)
		}
		a.Finish()
		lap(5)
	}
	for i, name := range []string{"request", "", "new-decryptor", "share", "share-wire+add", "finish"} {
		if name == "" {
			continue
		}
		b.ReportMetric(float64(parts[i].Microseconds())/1e3/float64(b.N), name+"-ms")
	}
}
