// Package backoff keys the upstream kubelet's container and image back-off:
// client-go's flowcontrol.Backoff, 10 s doubling to a cap, reset after the
// container ran cleanly for twice the cap (10 min for the 5 min default).
package backoff

import (
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/flowcontrol"
)

// Initial is the first back-off step, as upstream.
const Initial = 10 * time.Second

// New returns a back-off capped at max.
func New(max time.Duration) *flowcontrol.Backoff {
	return flowcontrol.NewBackOff(Initial, max)
}

// Key is upstream's GetBackoffKey: the container's identity including what
// would make a new container different (image, resources).
func Key(pod *v1.Pod, c *v1.Container) string {
	h := fnv.New64a()
	h.Write([]byte(strings.Join([]string{pod.Name, pod.Namespace, string(pod.UID), c.Name, c.Image, c.Resources.String()}, "/")))
	return strconv.FormatUint(h.Sum64(), 16)
}

// ImageKey keys the image pull back-off per Pod and image, as upstream.
func ImageKey(pod *v1.Pod, image string) string {
	return string(pod.UID) + "_" + image
}
