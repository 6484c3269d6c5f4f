package runtime

import (
	"bytes"
	"os"
	"strings"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Upstream's limits on termination messages (kuberuntime).
const (
	maxMessageBytes = 4096
	maxLogLines     = 80
	maxLogBytes     = 2048
)

// TerminationMessage reads an exited container's message as the upstream
// kubelet does: the file mounted at its terminationMessagePath, else, for
// FallbackToLogsOnError and a failed container, the tail of its log.
func TerminationMessage(st *runtimeapi.ContainerStatus) string {
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		return ""
	}
	path := st.Annotations[TermMsgPathAnn]
	if path != "" {
		for _, m := range st.Mounts {
			if m.ContainerPath == path {
				if b, err := readAtMost(m.HostPath, maxMessageBytes); err == nil && len(b) > 0 {
					return string(b)
				}
			}
		}
	}
	if v1.TerminationMessagePolicy(st.Annotations[TermMsgPolicyAnn]) == v1.TerminationMessageFallbackToLogsOnError &&
		st.ExitCode != 0 && st.LogPath != "" {
		return logTail(st.LogPath)
	}
	return ""
}

func readAtMost(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, n)
	k, _ := f.Read(buf)
	return buf[:k], nil
}

// logTail is the last lines of a CRI log file ("time stream tag message"),
// messages only, as upstream's fallback reads them.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > maxLogLines {
		lines = lines[len(lines)-maxLogLines:]
	}
	var out strings.Builder
	for _, l := range lines {
		f := bytes.SplitN(l, []byte(" "), 4)
		if len(f) < 4 {
			continue
		}
		out.Write(f[3])
		if string(f[2]) == "F" {
			out.WriteByte('\n')
		}
	}
	s := out.String()
	if len(s) > maxLogBytes {
		s = s[len(s)-maxLogBytes:]
	}
	return s
}
