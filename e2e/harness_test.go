package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sstemuBin is the sstemu binary built once for the whole package by TestMain.
var sstemuBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sstemu-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sstemuBin = filepath.Join(dir, "sstemu")
	build := exec.Command("go", "build", "-o", sstemuBin, "../cmd/sstemu")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building sstemu:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running sstemu with its JSON log lines collected.
type proc struct {
	t     *testing.T
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []map[string]any
	raw   strings.Builder
	seen  chan struct{} // signalled on every new line
	done  chan struct{}
	err   error
}

// start runs `sstemu args...` with JSON logs on stderr and stops it when the test ends.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	return startEnv(t, nil, args...)
}

// startEnv is start with extra environment variables ("NAME=value") for the process.
func startEnv(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	args = append(args, "--log-format", "json")
	p := &proc{t: t, cmd: exec.Command(sstemuBin, args...), seen: make(chan struct{}, 1), done: make(chan struct{})}
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = &lockedWriter{p: p}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.collect(stderr)
	t.Cleanup(func() { p.stop() })
	return p
}

type lockedWriter struct{ p *proc }

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	w.p.raw.Write(b)
	return len(b), nil
}

func (p *proc) collect(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		p.mu.Lock()
		p.raw.WriteString(sc.Text() + "\n")
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			p.lines = append(p.lines, m)
		}
		p.mu.Unlock()
		select {
		case p.seen <- struct{}{}:
		default:
		}
	}
	p.err = p.cmd.Wait()
	close(p.done)
}

// waitFor returns the first log line for which match is true, failing after timeout.
func (p *proc) waitFor(timeout time.Duration, what string, match func(map[string]any) bool) map[string]any {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		for _, l := range p.lines {
			if match(l) {
				p.mu.Unlock()
				return l
			}
		}
		p.mu.Unlock()
		select {
		case <-p.seen:
		case <-p.done:
			p.t.Fatalf("sstemu exited (%v) before logging %s; output:\n%s", p.err, what, p.output())
		case <-deadline:
			p.t.Fatalf("no log line %s within %v; output:\n%s", what, timeout, p.output())
		}
	}
}

// count returns how many log lines match.
func (p *proc) count(match func(map[string]any) bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.lines {
		if match(l) {
			n++
		}
	}
	return n
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

// listenAddr waits for the "listening" line of a listener and returns its address:
// "tcpfront" is the DeviceGEMM front end, "http" the statistics (logged by the command,
// layer sstemu).
func (p *proc) listenAddr(listener string) string {
	p.t.Helper()
	layer := listener
	if listener == "http" {
		layer = "sstemu"
	}
	l := p.waitFor(10*time.Second, "listening on "+listener, func(m map[string]any) bool {
		return m["message"] == "listening" && m["layer"] == layer
	})
	return l["addr"].(string)
}

// signal sends sig and waits for the process to exit, returning its exit error.
func (p *proc) signal(sig syscall.Signal, timeout time.Duration) error {
	p.t.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.t.Fatalf("sstemu did not exit within %v of %v; output:\n%s", timeout, sig, p.output())
		return nil
	}
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// withTimeout is a context for one test step.
func withTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
