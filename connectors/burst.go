package connectors

import "github.com/ferry-gateway/ferry/internal/burstlog"

// Burst logs the first event of a burst and counts the rest; see burstlog.
type Burst = burstlog.Burst
