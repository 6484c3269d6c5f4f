package nftables

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
	"sigs.k8s.io/knftables"
)

// countingNFT counts the operations of the last transaction it ran.
type countingNFT struct {
	knftables.Interface
	ops  int
	runs int
	last string
}

func (c *countingNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	c.ops = tx.NumOperations()
	c.runs++
	c.last = tx.String()
	return c.Interface.Run(ctx, tx)
}

// realNFTTarget is real nftables in a private network namespace. Every
// call into it runs on one OS thread that entered the namespace, so nft
// never runs against the host's ruleset.
func realNFTTarget(b *testing.B) *benchTarget {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		b.Skip("needs the nft binary")
	}
	name := fmt.Sprintf("nftbench-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		b.Fatalf("ip netns add: %v: %s", err, out)
	}
	b.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	h, err := netns.GetFromName(name)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })

	calls := make(chan func(), 1)
	b.Cleanup(func() { close(calls) })
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := netns.Set(h); err != nil {
			ready <- err
			return
		}
		ready <- nil
		for f := range calls {
			f()
		}
	}()
	if err := <-ready; err != nil {
		b.Fatalf("setns: %v", err)
	}
	t := &benchTarget{}
	t.inNS = func(f func() error) error {
		done := make(chan error, 1)
		calls <- func() { done <- f() }
		return <-done
	}
	t.reset = func() {
		if err := t.inNS(func() error {
			_ = exec.Command("nft", "delete", "table", "ip", DefaultTableName).Run()
			nft, err := knftables.New(knftables.IPv4Family, DefaultTableName)
			if err != nil {
				return err
			}
			c := &countingNFT{Interface: nft}
			t.nft = c
			t.ops = func() int { return c.ops }
			return nil
		}); err != nil {
			b.Fatalf("nft: %v", err)
		}
	}
	t.reset()
	return t
}
