package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// shutdownSignals are the signals on which a long-running command stops gracefully.
var shutdownSignals = []os.Signal{os.Interrupt, syscall.SIGTERM}

// withShutdownSignals returns a context cancelled by the first SIGINT or SIGTERM. Calling
// stop restores the default handling, so a second signal kills the process.
func withShutdownSignals(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, shutdownSignals...)
}
