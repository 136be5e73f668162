//go:build unix

package stack_test

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time (user and system) the process has used so far, which a
// loaded shared machine inflates far less than wall-clock time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
