package modbus

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/connectors/sampletest"
)

func TestSample(t *testing.T) {
	sampletest.Check(t, "modbus", "README.md")
}

// TestREADMEWireLimits keeps the README's table of RTU line limits equal
// to what rtuWireLimit computes.
func TestREADMEWireLimits(t *testing.T) {
	doc, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, baud := range []int{9600, 19200, 115200} {
		reads, regs := rtuWireLimit(baud)
		txn := time.Duration(8+255)*charTime(baud) + 2*frameGap(baud)
		row := fmt.Sprintf("| %d | %.3f ms | %.2f ms | %.1f ms | %.2f | %.0f |", baud,
			float64(charTime(baud))/1e6, float64(frameGap(baud))/1e6, float64(txn)/1e6, reads, regs)
		if !strings.Contains(string(doc), row) {
			t.Errorf("README lacks the row\n%s", row)
		}
	}
}
