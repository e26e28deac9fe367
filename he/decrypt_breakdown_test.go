package he

import (
	"runtime"
	"testing"
	"time"
)

// BenchmarkDecryptBreakdown2NN splits one T = 3 decryption of the 2NN aggregate into its
// phases (CPU ms per phase, summed over the three members where per member).
func BenchmarkDecryptBreakdown2NN(b *testing.B) {
	f := bench2NN(b)
	active := f.setup.Ceremony.Committee[:3]
	bufs := relabelled(f.uploads[:2])
	var parts [6]time.Duration
	var shareBuf []byte
	for b.Loop() {
		a, _ := NewAggregator(f.setup, 1, dim2NN)
		for c, buf := range bufs {
			setSender(buf, PartyID(c+1))
			a.AddEncoded(buf)
		}
		runtime.GC()
		t := cpuTime()
		lap := func(i int) { n := cpuTime(); parts[i] += n - t; t = n }
		req, _ := a.DecryptRequest(active)
		rb, _ := req.MarshalBinary()
		lap(0)
		for _, id := range active {
			d, _ := NewDecryptor(f.keys[id])
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
