package syncbuffer

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestConcurrentWrites: lines written from many goroutines all arrive whole (run with -race).
func TestConcurrentWrites(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				_, err := fmt.Fprintf(&b, "g%d-%d\n", i, j)
				assert.NoError(t, err)
				_ = b.String()
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	assert.Len(t, lines, 800)
	assert.Contains(t, lines, "g7-99")
}
