package optrace

import (
	"math"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTimelinePlacesOpsOneAfterAnother(t *testing.T) {
	tl := NewTimeline(2)
	s, e := tl.Reserve(0, 10)
	assert.Equal(t, [2]uint64{0, 10}, [2]uint64{s, e})
	s, e = tl.Reserve(0, 5)
	assert.Equal(t, [2]uint64{10, 15}, [2]uint64{s, e})
	s, e = tl.Reserve(1, 7)
	assert.Equal(t, [2]uint64{0, 7}, [2]uint64{s, e}, "each device has its own timeline")
	s, e = tl.Reserve(5, 7)
	assert.Equal(t, [2]uint64{0, 0}, [2]uint64{s, e}, "no such device")

	recs := []Record{{Timed: true, Cycles: 3}, {Timed: false, Cycles: 100}, {Timed: true, Cycles: 4}}
	tl.ReserveRun(0, recs)
	assert.Equal(t, [2]uint64{15, 18}, [2]uint64{recs[0].StartCycle, recs[0].EndCycle})
	assert.Equal(t, [2]uint64{0, 0}, [2]uint64{recs[1].StartCycle, recs[1].EndCycle}, "untimed: no interval")
	assert.Equal(t, [2]uint64{18, 22}, [2]uint64{recs[2].StartCycle, recs[2].EndCycle})
	assert.Equal(t, uint64(22), tl.Now(0))

	tl.Reserve(1, math.MaxUint64)
	s, e = tl.Reserve(1, 1)
	assert.Equal(t, [2]uint64{math.MaxUint64, math.MaxUint64}, [2]uint64{s, e}, "saturates")
}

func TestTimelineConcurrentIntervalsDoNotOverlap(t *testing.T) {
	tl := NewTimeline(1)
	const callers, each = 16, 200
	got := make([][][2]uint64, callers)
	var wg sync.WaitGroup
	for g := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				s, e := tl.Reserve(0, uint64(1+(g+i)%7))
				got[g] = append(got[g], [2]uint64{s, e})
			}
		}()
	}
	wg.Wait()
	var total uint64
	covered := map[uint64]bool{}
	for _, ivs := range got {
		for _, iv := range ivs {
			for c := iv[0]; c < iv[1]; c++ {
				require.False(t, covered[c], "cycle %d in two intervals", c)
				covered[c] = true
			}
			total += iv[1] - iv[0]
		}
	}
	assert.Equal(t, total, tl.Now(0), "the intervals tile [0, cursor)")
}
