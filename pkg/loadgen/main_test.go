package loadgen

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// floorChildEnv makes the test binary a floor server process instead of running tests: it
// prints its address on stdout and serves until its stdin closes. The benchmarks use it to
// compare a server in another process (the real binary) with a floor in another process.
const floorChildEnv = "SSTEMU_LOADGEN_FLOOR_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(floorChildEnv) == "1" {
		if err := serveFloorChild(); err != nil {
			fmt.Fprintln(os.Stderr, "floor child:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

func serveFloorChild() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s := NewFloorServer()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = s.Close()
	}()
	fmt.Println(l.Addr().String())
	if err := s.Serve(l); err != ErrFloorClosed {
		return err
	}
	return nil
}

// benchFloorAddrEnv names a floor server already running in a process of its own
// (`sstemu floor`, as scripts/bench starts it); startFloorProcess then uses it.
const benchFloorAddrEnv = "SSTEMU_BENCH_FLOOR_ADDR"

// startFloorProcess returns the address of a floor server in another process: the one
// SSTEMU_BENCH_FLOOR_ADDR names, or else a child process it starts.
func startFloorProcess(tb testing.TB) string {
	tb.Helper()
	if addr := os.Getenv(benchFloorAddrEnv); addr != "" {
		return addr
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), floorChildEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = stdin.Close() // the child closes its server and exits
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		tb.Fatalf("floor child: reading its address: %v", err)
	}
	return strings.TrimSpace(line)
}

func TestFloorProcess(t *testing.T) {
	c, err := Dial(t.Context(), startFloorProcess(t), ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := make([]float32, 1)
	if err := c.GEMM(t.Context(), 1, 1, 2, []float32{3, 4}, []float32{5, 6}, out); err != nil || out[0] != 39 {
		t.Fatalf("3·5 + 4·6 = %v, %v; want 39", out[0], err)
	}
}
