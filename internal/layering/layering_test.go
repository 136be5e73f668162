package layering

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// module is the import path prefix of sstemu's packages.
const module = "github.com/sstemu/sstemu/"

// shared are the packages any layer may import: the wire structures, the performance
// models and the numerics.
var shared = []string{"pkg/protocol", "pkg/perfmodel", "pkg/linalg"}

// allowed lists, for every package of the module, the module packages its non-test files
// may import besides shared ones; nil marks a package that may import any (the wiring).
// A package missing from the table fails the test, so a new one gets a decision.
var allowed = map[string][]string{
	"cmd/sstemu":          nil,
	"pkg/stack":           nil,
	"e2e":                 {}, // drives the binary from outside
	"internal/cputime":    {}, // the benchmarks' process CPU time
	"internal/layering":   {},
	"internal/references": {}, // checks the tree's references; imports nothing of it
	"internal/refsst":     {}, // a test fake of the real SST component: speaks L5's wire only
	"internal/syncbuffer": {}, // the tests' concurrency-safe log sink

	"pkg/tcpfront":     {"pkg/deviceserver", "pkg/optrace"}, // L1 → L2, and L1's timing records
	"pkg/deviceserver": {"pkg/sstdev"},                      // L2 → L3 (today only through its Opener)
	"pkg/sstdev":       {"pkg/virtqueue"},                   // L3 → L4's rings
	"pkg/sstfuse":      {"pkg/sstdev"},                      // beside L3: serves its Files to other processes
	"pkg/virtiodev":    {"pkg/virtqueue"},                   // L4 (L5 only through its Dialer)
	"pkg/virtqueue":    {},                                  // L4's split virtqueue
	"pkg/sstcomponent": {},                                  // L5 (its models are shared)
	"pkg/loadgen":      {},                                  // the DeviceGEMM client: speaks L1's wire only
	"pkg/optrace":      {},                                  // timing records, timeline, trace and op log: beside L1, no layer
	"pkg/protocol":     {},                                  // shared packages import no layer
	"pkg/perfmodel":    {},                                  //
	"pkg/linalg":       {},                                  //
}

// goPackage is the part of `go list -json` output the test reads.
type goPackage struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// listModule returns every package of the module with its imports and dependencies, as
// `go list -deps -json` reports them, keyed by path relative to the module.
func listModule(t *testing.T) map[string]goPackage {
	t.Helper()
	goTool, err := exec.LookPath("go")
	require.NoError(t, err, "the layering check runs `go list`")
	cmd := exec.Command(goTool, "list", "-deps", "-json", module+"...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list: %s", stderr.String())
	pkgs := map[string]goPackage{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p goPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else {
			require.NoError(t, err)
		}
		if rel, ok := strings.CutPrefix(p.ImportPath, module); ok {
			pkgs[rel] = p
		}
	}
	require.NotEmpty(t, pkgs)
	return pkgs
}

// ownImports returns the module packages among paths, relative to the module.
func ownImports(paths []string) []string {
	var own []string
	for _, p := range paths {
		if rel, ok := strings.CutPrefix(p, module); ok {
			own = append(own, rel)
		}
	}
	return own
}

// TestLayerImports fails when a package imports a module package its row of allowed does
// not name: a layer reaching past its neighbour, or up the stack.
func TestLayerImports(t *testing.T) {
	pkgs := listModule(t)
	for rel, p := range pkgs {
		t.Run(rel, func(t *testing.T) {
			ok, known := allowed[rel]
			require.True(t, known, "package %s is not in the layering table of internal/layering: add its row", rel)
			if ok == nil {
				return
			}
			for _, imp := range ownImports(p.Imports) {
				if !slices.Contains(ok, imp) && !slices.Contains(shared, imp) {
					t.Errorf("%s imports %s; it may import only %v and the shared %v", rel, imp, ok, shared)
				}
			}
		})
	}
}

// TestLayersBelowOnly checks the dependency closure: no package depends, directly or
// through others, on a layer above it or on the wiring.
func TestLayersBelowOnly(t *testing.T) {
	order := []string{"pkg/tcpfront", "pkg/deviceserver", "pkg/sstdev", "pkg/virtiodev", "pkg/sstcomponent"}
	pkgs := listModule(t)
	for i, rel := range order {
		t.Run(rel, func(t *testing.T) {
			p, ok := pkgs[rel]
			require.True(t, ok, "%s not listed", rel)
			deps := ownImports(p.Deps)
			for _, above := range append(order[:i:i], "pkg/stack", "cmd/sstemu") {
				require.NotContains(t, deps, above, "%s depends on %s, which sits above it", rel, above)
			}
		})
	}
}
