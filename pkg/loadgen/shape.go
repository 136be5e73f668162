package loadgen

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseShape parses a GEMM shape written "MxNxK" (with x, X or ×), as C[M,N] = A[M,K]·B[K,N]:
// "4x16x8" is the reference client's small op. Each dimension must be a positive integer.
func ParseShape(s string) (m, n, k int, err error) {
	norm := strings.NewReplacer("×", "x", "X", "x").Replace(strings.TrimSpace(s))
	parts := strings.Split(norm, "x")
	if len(parts) != 3 {
		return 0, 0, 0, fmt.Errorf("loadgen: shape %q: want MxNxK, e.g. 4x16x8", s)
	}
	var dims [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 1 {
			return 0, 0, 0, fmt.Errorf("loadgen: shape %q: %s = %q is not a positive integer", s, "MNK"[i:i+1], p)
		}
		dims[i] = v
	}
	return dims[0], dims[1], dims[2], nil
}
