package sparkplug_test

import (
	"testing"

	"github.com/ferry-gateway/ferry/connectors/sampletest"
)

func TestSamples(t *testing.T) {
	sampletest.Check(t, "sparkplug", "README.md")
	sampletest.Check(t, "sparkplug-host", "README.md")
}
