package userns

import (
	"errors"
	"fmt"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
)

// kubeletUser is the user whose subordinate IDs, when it has some, are the
// kubelet's range (upstream's kubeletUser).
const kubeletUser = "kubelet"

// host is what reading the kubelet's range needs from the host.
type host struct {
	// lookupUser fails with user.UnknownUserError when there is no such user.
	lookupUser func(name string) error
	// run runs a command from PATH for its stdout; the error wraps
	// exec.ErrNotFound when the command is not installed.
	run func(name string, args ...string) ([]byte, error)
}

// orOS fills what h leaves unset with the real host.
func (h host) orOS() host {
	if h.lookupUser == nil {
		h.lookupUser = func(name string) error {
			_, err := user.Lookup(name)
			return err
		}
	}
	if h.run == nil {
		h.run = func(name string, args ...string) ([]byte, error) { return exec.Command(name, args...).Output() }
	}
	return h
}

// kubeletMappings is upstream's getKubeletMappings: the first ID and length
// of the IDs the kubelet hands out. A host with the user "kubelet" and
// getsubids gets that user's subordinate IDs (the same for users and
// groups); otherwise every ID from idsPerPod up.
func kubeletMappings(h host, idsPerPod uint32) (uint32, uint32, error) {
	defFirst := idsPerPod
	defLen := uint32((1 << 32) - uint64(defFirst))
	// The user is looked up first: getsubids may ask a remote service, and
	// an empty answer for an existing user means that service is down,
	// which must not silently become the default range.
	if err := h.lookupUser(kubeletUser); err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return defFirst, defLen, nil
		}
		return 0, 0, err
	}
	uids, err := h.run("getsubids", kubeletUser)
	if errors.Is(err, exec.ErrNotFound) {
		return defFirst, defLen, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("error retrieving additional uids for user %q: %w", kubeletUser, err)
	}
	gids, err := h.run("getsubids", "-g", kubeletUser)
	if err != nil {
		return 0, 0, fmt.Errorf("error retrieving additional gids for user %q: %w", kubeletUser, err)
	}
	if string(uids) != string(gids) {
		return 0, 0, fmt.Errorf("mismatched subuids and subgids for user %q", kubeletUser)
	}
	return parseGetSubIDs(string(uids))
}

// parseGetSubIDs is upstream's parseGetSubIdsOutput: one line
// "0: kubelet <first> <count>".
func parseGetSubIDs(input string) (uint32, uint32, error) {
	lines := strings.Split(strings.Trim(input, "\n"), "\n")
	if len(lines) != 1 {
		return 0, 0, fmt.Errorf("error parsing line %q: it must contain only one line", input)
	}
	parts := strings.Fields(lines[0])
	if len(parts) != 4 {
		return 0, 0, fmt.Errorf("invalid line %q", input)
	}
	first, err := strconv.ParseUint(parts[2], 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("error parsing line %q: %w", input, err)
	}
	n, err := strconv.ParseUint(parts[3], 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("error parsing line %q: %w", input, err)
	}
	return uint32(first), uint32(n), nil
}
