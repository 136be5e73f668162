// Package cputime reads the CPU time the process has used, user and system together:
// what the benchmarks of several layers report per op, because on a shared, loaded
// machine it grows far less than wall-clock time does.
package cputime

import (
	"errors"
	"testing"
	"time"
)

// Process returns the CPU time (user and system) this process has used so far, or
// errors.ErrUnsupported where the platform has no getrusage.
func Process() (time.Duration, error) { return process() }

// Of is Process for a test or benchmark: it skips tb where the platform cannot tell and
// fails it on any other error.
func Of(tb testing.TB) time.Duration {
	tb.Helper()
	d, err := Process()
	if errors.Is(err, errors.ErrUnsupported) {
		tb.Skip("no process CPU time on this platform")
	}
	if err != nil {
		tb.Fatal(err)
	}
	return d
}
