package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func jsonEncode(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }

func secondsDuration(s int64) time.Duration { return time.Duration(s) * time.Second }

// errQuery is a query parameter that does not parse.
var errQuery = errors.New("bad query parameter")

// logOptions decodes PodLogOptions from the query. (By hand: the generated
// url.Values conversions live in k8s.io/kubernetes, not in client-go's scheme.)
func logOptions(q url.Values) (*v1.PodLogOptions, error) {
	o := &v1.PodLogOptions{Container: q.Get("container")}
	boolean := func(name string, dst *bool) error {
		if v := q.Get(name); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%w: %s=%q", errQuery, name, v)
			}
			*dst = b
		}
		return nil
	}
	integer := func(name string) (*int64, error) {
		v := q.Get(name)
		if v == "" {
			return nil, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%w: %s=%q", errQuery, name, v)
		}
		return &n, nil
	}
	var err error
	if err = errors.Join(boolean("follow", &o.Follow), boolean("previous", &o.Previous), boolean("timestamps", &o.Timestamps),
		boolean("insecureSkipTLSVerifyBackend", &o.InsecureSkipTLSVerifyBackend)); err != nil {
		return nil, err
	}
	if o.SinceSeconds, err = integer("sinceSeconds"); err != nil {
		return nil, err
	}
	if o.TailLines, err = integer("tailLines"); err != nil {
		return nil, err
	}
	if o.LimitBytes, err = integer("limitBytes"); err != nil {
		return nil, err
	}
	if v := q.Get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return nil, fmt.Errorf("%w: sinceTime=%q", errQuery, v)
		}
		mt := metav1.NewTime(t)
		o.SinceTime = &mt
	}
	if v := q.Get("stream"); v != "" {
		switch v {
		case v1.LogStreamStdout, v1.LogStreamStderr, v1.LogStreamAll:
			o.Stream = &v
		default:
			return nil, fmt.Errorf("%w: stream=%q", errQuery, v)
		}
	}
	return o, nil
}
