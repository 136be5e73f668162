//go:build cgo && !noopenblas

package linalg

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCoreChoice checks the kernel choice in the environment the tests run in, without
// changing it: a user's OPENBLAS_CORETYPE is what OpenBLAS runs; an automatic choice is
// what OpenBLAS runs and never appears in Go's environment.
func TestCoreChoice(t *testing.T) {
	info := Kernels()
	user := os.Getenv("OPENBLAS_CORETYPE")
	switch {
	case user != "":
		assert.Equal(t, CoreUser, info.Source)
		assert.Equal(t, user, info.Requested)
	case info.Source == CoreAuto:
		assert.True(t, strings.EqualFold(info.Requested, info.Core), "asked for %q, OpenBLAS runs %q", info.Requested, info.Core)
		_, leaked := os.LookupEnv("OPENBLAS_CORETYPE")
		assert.False(t, leaked, "the automatic choice is in Go's environment")
	default:
		assert.Equal(t, CoreOpenBLAS, info.Source)
		assert.Empty(t, info.Requested)
	}
	assert.Contains(t, info.Backend, "core="+info.Core)
}

// childEnv marks the test binary run by TestCoreUserValue.
const childEnv = "SSTEMU_LINALG_CORE_CHILD"

// TestCoreUserValue runs this test binary again with OPENBLAS_CORETYPE=Prescott (SSE3,
// the baseline kernels every x86-64 CPU runs) and checks, in the child, that the value is
// the one OpenBLAS uses and is reported as the user's. It only runs where the variable is
// unset, so a value the machine sets is never replaced.
func TestCoreUserValue(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		info := Kernels()
		require.Equal(t, CoreUser, info.Source)
		require.Equal(t, "Prescott", info.Requested)
		require.True(t, strings.EqualFold(info.Core, "Prescott"), "OpenBLAS runs %q", info.Core)
		require.False(t, info.Fallback, info.CheckError)
		return
	}
	if runtime.GOARCH != "amd64" {
		t.Skip("Prescott is an x86-64 kernel set")
	}
	runChild(t, "TestCoreUserValue", childEnv, "Prescott")
}

// runChild runs test alone in this test binary again with marker set and
// OPENBLAS_CORETYPE=coretype, and fails unless it passes there. It runs only where the
// variable is unset, so a value the machine sets is never replaced.
func runChild(t *testing.T, test, marker, coretype string) {
	t.Helper()
	if _, set := os.LookupEnv("OPENBLAS_CORETYPE"); set {
		t.Skip("OPENBLAS_CORETYPE is set here; TestCoreChoice checks it is kept")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), marker+"=1", "OPENBLAS_CORETYPE="+coretype)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "PASS")
}

// emptyChildEnv marks the test binary run by TestCoreEmptyValue.
const emptyChildEnv = "SSTEMU_LINALG_CORE_EMPTY_CHILD"

// TestCoreEmptyValue runs this test binary again with OPENBLAS_CORETYPE set but empty (as
// `export OPENBLAS_CORETYPE=$UNSET` leaves it), which OpenBLAS ignores: it is not the user's
// choice, so the automatic one (or OpenBLAS's own) applies.
func TestCoreEmptyValue(t *testing.T) {
	if os.Getenv(emptyChildEnv) != "" {
		info := Kernels()
		require.NotEqual(t, CoreUser, info.Source, "an empty OPENBLAS_CORETYPE counted as the user's choice")
		require.NotEmpty(t, info.Core)
		require.False(t, info.Fallback, info.CheckError)
		return
	}
	runChild(t, "TestCoreEmptyValue", emptyChildEnv, "")
}
