package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/sstemu/sstemu/pkg/deviceserver"
	"github.com/sstemu/sstemu/pkg/linalg"
	"github.com/sstemu/sstemu/pkg/tcpfront"
)

// The servers the tests and benchmarks run against, each on a free loopback port.

// linalgExecutor is the simplest layer 2 behind tcpfront: compute the GEMM with
// linalg.Sgemm into a fresh result (as a real executor must, since tcpfront writes it after
// Execute returns), no timing. mod, if set, tampers with the result.
type linalgExecutor struct {
	mod func(c []float32)
}

func (e linalgExecutor) Execute(_ context.Context, op *deviceserver.Op) (*deviceserver.Result, error) {
	if op.Type != deviceserver.OpGEMM {
		return nil, fmt.Errorf("op type %v: only GEMM", op.Type)
	}
	g := op.GEMM
	c := make([]float32, g.M*g.N)
	linalg.Sgemm(g.M, g.N, g.K, g.A, g.B, c)
	if e.mod != nil {
		e.mod(c)
	}
	return &deviceserver.Result{Shape: []int{g.M, g.N}, Data: c}, nil
}

func listen(tb testing.TB) net.Listener {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// startFloor starts a FloorServer and returns its address.
func startFloor(tb testing.TB) string {
	tb.Helper()
	l := listen(tb)
	s := NewFloorServer()
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	tb.Cleanup(func() {
		_ = s.Close()
		if err := <-done; !errors.Is(err, ErrFloorClosed) {
			tb.Errorf("floor Serve returned %v, want ErrFloorClosed", err)
		}
	})
	return l.Addr().String()
}

// startTCPFront starts pkg/tcpfront's server with exec and returns its address.
func startTCPFront(tb testing.TB, exec deviceserver.Executor) string {
	tb.Helper()
	l := listen(tb)
	s := &tcpfront.Server{Executor: exec}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	tb.Cleanup(func() {
		_ = s.Close()
		<-done
	})
	return l.Addr().String()
}

// startRaw starts a server that hands every accepted connection to handle (which owns it);
// the cleanup closes the listener and every connection.
func startRaw(tb testing.TB, handle func(net.Conn)) string {
	tb.Helper()
	l := listen(tb)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go handle(c)
		}
	}()
	tb.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return l.Addr().String()
}

// servers are the real servers the client must work against.
var servers = []struct {
	name  string
	start func(testing.TB) string
}{
	{"floor", startFloor},
	{"tcpfront", func(tb testing.TB) string { return startTCPFront(tb, linalgExecutor{}) }},
}
