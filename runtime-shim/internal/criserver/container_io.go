package criserver

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"

	"github.com/nodesuite/nodesuite/runtime-shim/internal/crilog"
)

// containerIO owns a container's FIFOs: it copies stdout/stderr into the
// CRI log and to attached clients, and holds stdin for attach. FIFO paths are
// derived from the ID so that a restarted shim can reopen them (restart.go).
type containerIO struct {
	id    string
	fifos *cio.FIFOSet
	dio   *cio.DirectIO
	log   *crilog.File // nil when the kubelet gave no log path

	mu       sync.Mutex
	next     int
	attached map[int]attachment
	done     sync.WaitGroup
}

type attachment struct{ stdout, stderr io.Writer }

func fifoSet(dir, id string, tty, stdin bool) *cio.FIFOSet {
	d := filepath.Join(dir, id)
	c := cio.Config{Stdout: filepath.Join(d, "stdout"), Terminal: tty}
	if !tty {
		c.Stderr = filepath.Join(d, "stderr")
	}
	if stdin {
		c.Stdin = filepath.Join(d, "stdin")
	}
	return cio.NewFIFOSet(c, func() error { return os.RemoveAll(d) })
}

// openContainerIO opens (creating if needed) the FIFOs and starts copying.
func openContainerIO(ctx context.Context, dir, id, logPath string, tty, stdin bool) (*containerIO, error) {
	if err := os.MkdirAll(filepath.Join(dir, id), 0o700); err != nil {
		return nil, err
	}
	fs := fifoSet(dir, id, tty, stdin)
	dio, err := cio.NewDirectIO(ctx, fs)
	if err != nil {
		return nil, err
	}
	c := &containerIO{id: id, fifos: fs, dio: dio, attached: map[int]attachment{}}
	if logPath != "" {
		if c.log, err = crilog.Open(logPath); err != nil {
			_ = dio.Close()
			return nil, err
		}
	}
	c.pump(dio.Stdout, "stdout")
	if dio.Stderr != nil {
		c.pump(dio.Stderr, "stderr")
	}
	return c, nil
}

func (c *containerIO) creator() cio.Creator {
	return func(string) (cio.IO, error) { return c.dio, nil }
}

func (c *containerIO) attacher() cio.Attach {
	return func(*cio.FIFOSet) (cio.IO, error) { return c.dio, nil }
}

// pump copies one stream to the log (in CRI format) and to attachers (raw).
func (c *containerIO) pump(src io.Reader, stream string) {
	pr, pw := io.Pipe()
	c.done.Add(2)
	go func() {
		defer c.done.Done()
		var dst io.Writer = io.Discard
		if c.log != nil {
			dst = c.log
		}
		_ = crilog.Copy(dst, pr, stream, crilog.DefaultMaxLine, time.Now)
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		defer c.done.Done()
		defer pw.Close()
		buf := make([]byte, 32*1024)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				_, _ = pw.Write(buf[:n])
				c.mu.Lock()
				for k, a := range c.attached {
					w := a.stdout
					if stream == "stderr" {
						w = a.stderr
					}
					if w == nil {
						continue
					}
					if _, werr := w.Write(buf[:n]); werr != nil {
						delete(c.attached, k)
					}
				}
				c.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
}

// attach registers output writers until detach is called.
func (c *containerIO) attach(stdout, stderr io.Writer) (detach func()) {
	c.mu.Lock()
	k := c.next
	c.next++
	c.attached[k] = attachment{stdout: stdout, stderr: stderr}
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		delete(c.attached, k)
		c.mu.Unlock()
	}
}

// wait blocks until both streams hit EOF (the task exited), then closes the log.
func (c *containerIO) wait() {
	c.done.Wait()
	if c.log != nil {
		_ = c.log.Close()
	}
}

// close drops the FIFOs (after the task is deleted).
func (c *containerIO) close() {
	_ = c.dio.Close()
	if c.log != nil {
		_ = c.log.Close()
	}
}
