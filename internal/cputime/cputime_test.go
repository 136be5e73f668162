//go:build unix

package cputime

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Spinning adds CPU time (20 ms of it within 5 s of wall time, however loaded the
// machine); sleeping adds almost none.
func TestProcessCountsWorkNotSleep(t *testing.T) {
	before, err := Process()
	require.NoError(t, err)
	busy := before
	for end := time.Now().Add(5 * time.Second); busy-before < 20*time.Millisecond && time.Now().Before(end); {
		busy, err = Process()
		require.NoError(t, err)
	}
	require.GreaterOrEqual(t, busy-before, 20*time.Millisecond, "CPU time after 5 s of spinning")
	time.Sleep(50 * time.Millisecond)
	idle, err := Process()
	require.NoError(t, err)
	require.Less(t, idle-busy, 25*time.Millisecond, "CPU time while asleep for 50 ms")
}
