package app

import (
	"testing"

	"k8s.io/client-go/features"
)

func TestUsePlainList(t *testing.T) {
	before := features.FeatureGates().Enabled(features.InformerResourceVersion)
	usePlainList()
	usePlainList()
	if features.FeatureGates().Enabled(features.WatchListClient) {
		t.Errorf("WatchListClient still on")
	}
	if got := features.FeatureGates().Enabled(features.InformerResourceVersion); got != before {
		t.Errorf("InformerResourceVersion = %v, was %v: other gates must stay", got, before)
	}
}
