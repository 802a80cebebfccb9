//go:build race

package where

const raceEnabled = true
