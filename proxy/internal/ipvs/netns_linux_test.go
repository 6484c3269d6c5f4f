package ipvs

import (
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
)

// inNewNetNS moves the test's goroutine, locked to its thread, into a new
// network namespace until the test ends (commands it runs fork from that
// thread, so they run there too). It skips without root or namespaces.
func inNewNetNS(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (a network namespace)")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	ns, err := netns.New() // and switches this thread to it
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Skipf("no network namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			panic(err) // the thread must not go back to the pool in ns
		}
		ns.Close()
		orig.Close()
		runtime.UnlockOSThread()
	})
}
