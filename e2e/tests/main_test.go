package tests

import (
	"flag"
	"os"
	"testing"
)

// defaultParallel is how many tests run at once unless -test.parallel says
// otherwise. The tests mostly wait on the cluster, so go test's default
// (GOMAXPROCS, 2 on CI) would serialise the waits and double the run time.
const defaultParallel = "8"

func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		if err := flag.Set("test.parallel", defaultParallel); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}
