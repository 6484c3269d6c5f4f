package criserver

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
)

// statusTask is a task whose Status answers err (nothing else is called).
type statusTask struct {
	containerd.Task
	err error
}

func (t statusTask) Status(context.Context) (containerd.Status, error) {
	return containerd.Status{Status: containerd.Running}, t.err
}

func TestExitedMeanwhile(t *testing.T) {
	closed := errors.New("ttrpc: closed") // what a kill on a just-deleted task returns
	for _, tc := range []struct {
		name    string
		killErr error
		exited  bool
		status  error
		want    bool
	}{
		{name: "task already gone", killErr: fmt.Errorf("kill: %w", errdefs.ErrNotFound), want: true},
		{name: "exit arrives: the kill raced with it", killErr: closed, exited: true, want: true},
		{name: "no exit, task gone since", killErr: closed, status: errdefs.ErrNotFound, want: true},
		{name: "no exit, task still there: a real failure", killErr: closed, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := make(chan containerd.ExitStatus, 1)
			if tc.exited {
				ch <- *containerd.NewExitStatus(137, time.Time{}, nil)
			}
			if got := exitedMeanwhile(context.Background(), statusTask{err: tc.status}, ch, tc.killErr); got != tc.want {
				t.Fatalf("exitedMeanwhile = %v, want %v", got, tc.want)
			}
		})
	}
}
