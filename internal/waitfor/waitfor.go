// Package waitfor polls a condition in a test until it holds. It is for
// states that no event announces (a gauge in a status snapshot, a file
// growing); the deadline is generous and only a failure takes that long.
package waitfor

import (
	"testing"
	"time"
)

// Every is how often the condition is checked.
const Every = 10 * time.Millisecond

// Until checks cond every 10ms until it holds, failing the test with
// what() when within has passed first. what is called only then, so it may
// describe the state the test gave up on.
func Until(t testing.TB, within time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(Every)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what())
		}
		<-tick.C
	}
}

// Say is what for a fixed message.
func Say(msg string) func() string { return func() string { return msg } }
