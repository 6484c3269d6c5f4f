package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"k8s.io/klog/v2"
)

func TestKlogArrivesThroughZap(t *testing.T) {
	var buf bytes.Buffer
	o := &Options{Format: "json", Level: "2"}
	logger, flush, err := o.New(&buf, true)
	if err != nil {
		t.Fatal(err)
	}
	defer klog.ClearLogger()
	klog.InfoS("watch started", "resource", "pods")
	klog.V(2).Infof("relist took %dms", 7)
	klog.V(5).Info("too verbose, must be dropped")
	klog.ErrorS(errors.New("boom"), "sync failed", "pod", "default/web")
	logger.Info("direct")
	flush()

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		m := map[string]any{}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q is not JSON from zap: %v", l, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 4 {
		t.Fatalf("want 4 records (V(5) dropped), got %d:\n%s", len(lines), buf.String())
	}
	if lines[0]["msg"] != "watch started" || lines[0]["resource"] != "pods" || lines[0]["logger"] != "klog" {
		t.Errorf("structured klog record lost its fields: %v", lines[0])
	}
	if lines[1]["msg"] != "relist took 7ms" {
		t.Errorf("printf-style klog record: %v", lines[1])
	}
	if lines[2]["level"] != "error" || lines[2]["error"] != "boom" {
		t.Errorf("klog error record: %v", lines[2])
	}
	if lines[3]["msg"] != "direct" {
		t.Errorf("zap record: %v", lines[3])
	}
}

func TestValidateNamesTheFlag(t *testing.T) {
	for _, o := range []Options{{Format: "xml", Level: "info"}, {Format: "json", Level: "loud"}, {Format: "json", Level: "300"}} {
		err := o.Validate()
		if !errors.Is(err, ErrInvalidOption) {
			t.Fatalf("%+v: want ErrInvalidOption, got %v", o, err)
		}
		if !strings.Contains(err.Error(), "--log-") {
			t.Errorf("%+v: error does not name the flag: %v", o, err)
		}
	}
	if err := (&Options{Format: "console", Level: "debug"}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConsoleLevelFilters(t *testing.T) {
	var buf bytes.Buffer
	logger, flush, err := (&Options{Format: "console", Level: "warn"}).New(&buf, false)
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("hidden")
	logger.Warn("shown")
	flush()
	if strings.Contains(buf.String(), "hidden") || !strings.Contains(buf.String(), "WARN") {
		t.Fatalf("level filter: %q", buf.String())
	}
}
