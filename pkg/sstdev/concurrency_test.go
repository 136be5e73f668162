package sstdev_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/sstdev"
)

// requireAllFree checks that every slot is back and nothing is in flight.
func requireAllFree(t *testing.T, d *sstdev.Device) {
	t.Helper()
	eventually(t, "all slots free", func() bool {
		st := d.Stats()
		return st.FreeSlots == sstdev.NumSlots && st.InFlight == 0 && st.Abandoned == 0
	})
}

// TestStress has 64 goroutines, each with its own file, send 500 requests each on one
// device, half answered by the device itself (ECHO, payload marked per request), half by
// layer 5 (COMPUTE, result derived from the request); every answer must match its request
// and the request ids must be exactly 1 … 32000.
func TestStress(t *testing.T) {
	const writers, perWriter = 64, 500
	for _, tc := range []struct {
		name     string
		features protocol.Feature
		eventIdx bool
	}{
		{"event idx", 0, true},
		{"flag suppression", sstdev.DriverFeatures &^ protocol.FeatureEventIdx, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l5 fakeL5
			r := newRig(t, sstdev.Config{Features: tc.features}, l5.serve)
			assert.Equal(t, tc.eventIdx, r.dev.Stats().Features&protocol.FeatureEventIdx != 0)

			ids := make([][]uint64, writers)
			errs := make(chan error, writers)
			var wg sync.WaitGroup
			for w := range writers {
				f := r.open(t)
				wg.Go(func() {
					errs <- stressWriter(f, uint64(w), perWriter, &ids[w])
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}

			all := slices.Concat(ids...)
			slices.Sort(all)
			require.Len(t, all, writers*perWriter)
			for i, id := range all {
				require.Equal(t, uint64(i+1), id, "request ids are 1 … %d, each once", writers*perWriter)
			}
			assert.Equal(t, int64(writers*perWriter/2), l5.served.Load(), "every COMPUTE reached layer 5 once")
			st := r.dev.Stats()
			assert.Equal(t, int64(writers*perWriter), st.Writes)
			assert.Equal(t, int64(writers*perWriter), st.Answers)
			assert.Zero(t, st.Timeouts+st.Failed+st.LateAnswers)
			requireAllFree(t, r.dev)
		})
	}
}

// stressWriter sends n requests on f and checks each answer; ids receives the request ids
// the answers carried.
func stressWriter(f *sstdev.File, w uint64, n int, ids *[]uint64) error {
	buf := make([]byte, respSize)
	for i := range n {
		user := w<<32 | uint64(i)
		var req []byte
		if i%2 == 0 {
			req = request(typeEcho, 0, user)
			for k := range 64 {
				req[offReqPayload+k] = byte(user>>(8*(k%8))) ^ byte(k)
			}
		} else {
			req = computeRequest(user, user)
		}
		if n, err := f.Write(req); err != nil || n != reqSize {
			return fmt.Errorf("writer %d request %d: write %d, %v", w, i, n, err)
		}
		if n, err := f.Read(buf); err != nil || n != respSize {
			return fmt.Errorf("writer %d request %d: read %d, %v", w, i, n, err)
		}
		resp := parseResponse(buf)
		if resp.status != statusOK || resp.user != user {
			return fmt.Errorf("writer %d request %d: status %d user %#x, want OK %#x", w, i, resp.status, resp.user, user)
		}
		if i%2 == 0 {
			for k := range 64 {
				if want := byte(user>>(8*(k%8))) ^ byte(k); resp.payload[k] != want {
					return fmt.Errorf("writer %d request %d: echo byte %d is %#x, want %#x", w, i, k, resp.payload[k], want)
				}
			}
		} else if want := user*fakeMul + fakeAdd; resp.result != want {
			return fmt.Errorf("writer %d request %d: result %d, want %d", w, i, resp.result, want)
		}
		*ids = append(*ids, resp.requestID)
	}
	return nil
}

// TestTimeoutAndLateAnswer checks ETIMEDOUT with a layer 5 that does not answer in time,
// and that the slot stays with the device until the late answer arrives.
func TestTimeoutAndLateAnswer(t *testing.T) {
	const timeout = 50 * time.Millisecond
	var l5 fakeL5
	r := newRig(t, sstdev.Config{Timeout: timeout}, l5.serve)
	f := r.open(t)

	l5.hold()
	start := time.Now()
	n, err := f.Write(computeRequest(1, 1))
	elapsed := time.Since(start)
	assert.Zero(t, n)
	requireErrno(t, err, "write", "/dev/sst0", syscall.ETIMEDOUT)
	assert.GreaterOrEqual(t, elapsed, timeout)
	assert.Less(t, elapsed, waitLimit)

	st := r.dev.Stats()
	assert.Equal(t, int64(1), st.Timeouts)
	assert.Equal(t, 1, st.Abandoned)
	assert.Equal(t, 1, st.InFlight)
	assert.Equal(t, sstdev.NumSlots-1, st.FreeSlots, "the timed-out slot is not free")
	_, err = f.Read(make([]byte, respSize))
	requireErrno(t, err, "read", "/dev/sst0", syscall.EAGAIN)

	l5.release()
	requireAllFree(t, r.dev)
	assert.Equal(t, int64(1), r.dev.Stats().LateAnswers)
	_, err = f.Read(make([]byte, respSize))
	requireErrno(t, err, "read", "/dev/sst0", syscall.EAGAIN)
	assert.Equal(t, uint64(2), roundTrip(t, f, computeRequest(2, 1)).requestID)
}

// TestAbandonedSlotsNotReused times out a request in every slot and checks that a further
// write cannot get one before the device answers.
func TestAbandonedSlotsNotReused(t *testing.T) {
	const timeout = 100 * time.Millisecond
	var l5 fakeL5
	r := newRig(t, sstdev.Config{Timeout: timeout}, l5.serve)
	l5.hold()

	var chans []<-chan result
	for i := range sstdev.NumSlots {
		chans = append(chans, writeAsync(r.open(t), computeRequest(uint64(i), 1)))
	}
	for _, ch := range chans {
		requireErrno(t, receive(t, ch).err, "write", "/dev/sst0", syscall.ETIMEDOUT)
	}
	st := r.dev.Stats()
	require.Equal(t, 0, st.FreeSlots)
	require.Equal(t, sstdev.NumSlots, st.Abandoned)
	require.Equal(t, sstdev.NumSlots, st.InFlight)

	f := r.open(t)
	_, err := f.Write(computeRequest(999, 1))
	requireErrno(t, err, "write", "/dev/sst0", syscall.ETIMEDOUT)
	assert.Equal(t, int64(1), r.dev.Stats().SlotWaits)
	assert.Equal(t, uint64(sstdev.NumSlots), r.backend.Stats().Requests, "the extra write never reached the device")

	l5.release()
	requireAllFree(t, r.dev)
	assert.Equal(t, int64(sstdev.NumSlots), r.dev.Stats().LateAnswers)
	assert.Equal(t, uint64(sstdev.NumSlots+1), roundTrip(t, f, computeRequest(1000, 1)).requestID)
}

// TestWriterWaitsForSlot fills every slot and checks that one more writer waits for space
// instead of failing, and gets its answer once layer 5 answers.
func TestWriterWaitsForSlot(t *testing.T) {
	var l5 fakeL5
	r := newRig(t, sstdev.Config{}, l5.serve)
	l5.hold()

	files := make([]*sstdev.File, sstdev.NumSlots+1)
	chans := make([]<-chan result, len(files))
	for i := range files {
		files[i] = r.open(t)
	}
	for i := range sstdev.NumSlots {
		chans[i] = writeAsync(files[i], computeRequest(uint64(i), uint64(i)))
	}
	eventually(t, "every slot in flight", func() bool { return r.dev.Stats().InFlight == sstdev.NumSlots })
	last := sstdev.NumSlots
	chans[last] = writeAsync(files[last], computeRequest(uint64(last), uint64(last)))
	eventually(t, "the extra writer waits", func() bool { return r.dev.Stats().SlotWaits == 1 })
	select {
	case res := <-chans[last]:
		t.Fatalf("writer did not wait: %d, %v", res.n, res.err)
	case <-time.After(20 * time.Millisecond):
	}

	l5.release()
	buf := make([]byte, respSize)
	for i, ch := range chans {
		res := receive(t, ch)
		require.NoError(t, res.err)
		_, err := files[i].Read(buf)
		require.NoError(t, err)
		resp := parseResponse(buf)
		assert.Equal(t, uint64(i), resp.user)
		assert.Equal(t, uint64(i)*fakeMul+fakeAdd, resp.result)
	}
	requireAllFree(t, r.dev)
}

// TestCloseInterruptsWrite checks EINTR for a write whose file is closed while it waits,
// and that its slot is reclaimed when the answer arrives.
func TestCloseInterruptsWrite(t *testing.T) {
	var l5 fakeL5
	r := newRig(t, sstdev.Config{}, l5.serve)
	l5.hold()
	f := r.open(t)
	ch := writeAsync(f, computeRequest(1, 1))
	eventually(t, "request in flight", func() bool { return r.dev.Stats().InFlight == 1 })
	require.NoError(t, f.Close())
	requireErrno(t, receive(t, ch).err, "write", "/dev/sst0", syscall.EINTR)
	st := r.dev.Stats()
	assert.Equal(t, int64(1), st.Interrupted)
	assert.Equal(t, 1, st.Abandoned)

	l5.release()
	requireAllFree(t, r.dev)
	assert.Equal(t, int64(1), r.dev.Stats().LateAnswers)
}

// TestRemoveWhileWaiting closes the device under a waiting writer: ENODEV, and every slot
// is reclaimed at once since the device was reset.
func TestRemoveWhileWaiting(t *testing.T) {
	var l5 fakeL5
	r := newRig(t, sstdev.Config{}, l5.serve)
	l5.hold()
	f := r.open(t)
	ch := writeAsync(f, computeRequest(1, 1))
	eventually(t, "request in flight", func() bool { return r.dev.Stats().InFlight == 1 })
	require.NoError(t, r.dev.Close())
	requireErrno(t, receive(t, ch).err, "write", "/dev/sst0", syscall.ENODEV)
	requireAllFree(t, r.dev)
	_, err := r.dev.Open()
	requireErrno(t, err, "open", "/dev/sst0", syscall.ENODEV)
}

// TestResetReclaims resets the device under a waiting writer: EIO, every slot reclaimed,
// and the device works again with ids that keep counting.
func TestResetReclaims(t *testing.T) {
	var l5 fakeL5
	r := newRig(t, sstdev.Config{}, l5.serve)
	f := r.open(t)
	assert.Equal(t, uint64(1), roundTrip(t, f, computeRequest(1, 1)).requestID)

	l5.hold()
	ch := writeAsync(f, computeRequest(2, 1))
	eventually(t, "request in flight", func() bool { return r.dev.Stats().InFlight == 1 })
	require.NoError(t, r.dev.Reset())
	requireErrno(t, receive(t, ch).err, "write", "/dev/sst0", syscall.EIO)
	requireAllFree(t, r.dev)
	st := r.dev.Stats()
	assert.Equal(t, int64(1), st.Resets)
	assert.Equal(t, int64(1), st.Failed)
	assert.True(t, st.Ready)

	// The answer to the request lost in the reset is discarded by the device.
	l5.release()
	eventually(t, "stale answer discarded", func() bool { return r.backend.Stats().Stale == 1 })
	resp := roundTrip(t, f, computeRequest(3, 4))
	assert.Equal(t, uint64(3), resp.requestID)
	assert.Equal(t, uint64(3), resp.user)
	assert.Equal(t, uint64(4*fakeMul+fakeAdd), resp.result)
	requireAllFree(t, r.dev)
}

// TestResetUnderLoad resets the device while writers run: each write either succeeds with
// its own answer or fails with EIO, and no slot is lost.
func TestResetUnderLoad(t *testing.T) {
	var l5 fakeL5
	r := newRig(t, sstdev.Config{}, l5.serve)
	const writers, perWriter = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		f := r.open(t)
		wg.Go(func() {
			buf := make([]byte, respSize)
			for i := range perWriter {
				user := uint64(w)<<32 | uint64(i)
				if _, err := f.Write(computeRequest(user, user)); err != nil {
					if !isErrno(err, syscall.EIO) {
						errs <- err
						return
					}
					continue
				}
				if _, err := f.Read(buf); err != nil {
					errs <- err
					return
				}
				if resp := parseResponse(buf); resp.user != user || resp.result != user*fakeMul+fakeAdd {
					errs <- fmt.Errorf("writer %d request %d: user %#x result %d", w, i, resp.user, resp.result)
					return
				}
			}
		})
	}
	for range 5 {
		time.Sleep(2 * time.Millisecond)
		require.NoError(t, r.dev.Reset())
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	requireAllFree(t, r.dev)
}

func isErrno(err error, errno syscall.Errno) bool { return errors.Is(err, errno) }
