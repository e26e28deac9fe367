package testsupport

import (
	"context"
	"io"
	"testing"
	"testing/synctest"
)

// A record carries the attributes given to With (under their groups) and those of the call,
// and WaitFor finds a record logged before the wait as well as one logged during it.
func TestRecorderWaitFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRecorder(t)
		log := r.Logger().With("client", "b").WithGroup("g")
		log.Info("client connected", "session", 1)
		if rec := r.WaitFor(t, "of the connection", Message("client connected", "client", "b", "g.session", "1")); rec.Attrs["client"] != "b" {
			t.Fatalf("record %v", rec)
		}
		go log.Info("client disconnected", "reason", "gone")
		r.WaitFor(t, "of the departure", Message("client disconnected", "g.reason", "gone"))
		if n := len(r.Records()); n != 2 {
			t.Fatalf("%d records, want 2", n)
		}
	})
}

// A name with no listener refuses connections; a listener opened again under the same name
// takes over its connections.
func TestNetworkListenAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := NewNetwork()
		if _, err := nw.Dial(context.Background(), "srv"); err == nil {
			t.Fatal("dial with no listener succeeded")
		}
		first := nw.Listen(t, "srv")
		first.Close()
		if _, err := nw.Dial(context.Background(), "srv"); err == nil {
			t.Fatal("dial to a closed listener succeeded")
		}
		second := nw.Listen(t, "srv")
		go func() {
			c, err := second.Accept()
			if err == nil {
				c.Write([]byte("hi"))
				c.Close()
			}
		}()
		c, err := nw.Dial(context.Background(), "srv")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if b, err := io.ReadAll(c); err != nil || string(b) != "hi" {
			t.Fatalf("read %q %v", b, err)
		}
	})
}
