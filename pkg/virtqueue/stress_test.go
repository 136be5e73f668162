package virtqueue

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// answer is what the test device writes back for request value v: an arbitrary mix, so
// a response cannot be mistaken for its request or for another request's answer.
func answer(v uint64) uint64 { return v*0x9E3779B97F4A7C15 ^ 0xA5A5A5A5A5A5A5A5 }

// slots gives each in-flight chain its own 8-byte request and 8-byte response buffer.
type slots struct {
	req, rsp []uint64
	free     []int
}

func newSlots(t testing.TB, mem *GuestMemory, n int) *slots {
	s := &slots{req: make([]uint64, n), rsp: make([]uint64, n)}
	for i := 0; i < n; i++ {
		var err error
		s.req[i], err = mem.Alloc(8, 8)
		require.NoError(t, err)
		s.rsp[i], err = mem.Alloc(8, 8)
		require.NoError(t, err)
		s.free = append(s.free, i)
	}
	return s
}

// serve answers one chain the way the test device does and pushes it.
func serve(dev *DeviceQueue, c Chain) error {
	var b [8]byte
	if n, err := c.Gather(b[:]); err != nil || n != 8 {
		return errors.Join(err, errors.New("short request"))
	}
	binary.LittleEndian.PutUint64(b[:], answer(binary.LittleEndian.Uint64(b[:])))
	n, err := c.Scatter(b[:])
	if err != nil {
		return err
	}
	return dev.PushUsed(c.Head, uint32(n))
}

// startAt moves both sides of a fresh, empty queue to free-running index idx, as if idx
// chains had already gone round: the ring indices, the event fields and each side's
// private copy.
func (p *pair) startAt(t testing.TB, idx uint16) {
	t.Helper()
	p.drv.availIdx, p.drv.published, p.drv.lastUsed = idx, idx, idx
	p.dev.lastAvail, p.dev.usedIdx, p.dev.signalled = idx, idx, idx
	require.NoError(t, p.mem.WriteU16(p.l.Avail+offIdx, idx))
	require.NoError(t, p.mem.WriteU16(p.l.Used+offIdx, idx))
	require.NoError(t, p.mem.WriteU16(p.l.usedEvent(), idx))
	require.NoError(t, p.mem.WriteU16(p.l.availEvent(), idx))
}

// TestWrapAround pushes batches of chains through a small queue across the wrap of the
// free-running indices at 65535, checking every answer, and that with both sides always
// caught up every Publish and every NeedsInterrupt still says "notify" (a comparison that
// is not wrap-safe fails at 65535 → 0). One run starts at 0 and wraps once.
func TestWrapAround(t *testing.T) {
	cases := []struct {
		name  string
		f     Features
		start uint16
		total int
	}{
		{"flags", Features{}, 65536 - 5000, 20_000},
		{"event_idx", Features{EventIdx: true}, 65536 - 5000, 20_000},
		{"event_idx from zero", Features{EventIdx: true}, 0, 70_000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() && tc.total > 20_000 {
				t.Skip("long")
			}
			p := newPair(t, 1<<16, 16, tc.f)
			p.startAt(t, tc.start)
			s := newSlots(t, p.mem, 8) // two descriptors per chain
			rng := rand.New(rand.NewPCG(1, 2))
			bySlot := make(map[uint16]int)
			seq := make([]uint64, 8)
			done := 0
			for done < tc.total {
				batch := 1 + rng.IntN(8)
				for i := 0; i < batch && done+i < tc.total; i++ {
					k := s.free[len(s.free)-1]
					s.free = s.free[:len(s.free)-1]
					seq[k] = uint64(done + i)
					require.NoError(t, p.mem.WriteU64(s.req[k], seq[k]))
					h, err := p.drv.Add([]Buffer{{Addr: s.req[k], Len: 8}, {Addr: s.rsp[k], Len: 8, Writable: true}})
					require.NoError(t, err)
					bySlot[h] = k
				}
				notify, err := p.drv.Publish()
				require.NoError(t, err)
				require.True(t, notify, "device is idle and caught up at chain %d", done)
				for {
					c, ok, err := p.dev.Pop()
					require.NoError(t, err)
					if !ok {
						break
					}
					require.NoError(t, serve(p.dev, c))
				}
				require.True(t, p.dev.NeedsInterrupt(), "driver is caught up at chain %d", done)
				for {
					e, ok, err := p.drv.PopUsed()
					require.NoError(t, err)
					if !ok {
						break
					}
					k := bySlot[e.ID]
					require.EqualValues(t, 8, e.Len)
					got, err := p.mem.ReadU64(s.rsp[k])
					require.NoError(t, err)
					require.Equal(t, answer(seq[k]), got, "chain %d", seq[k])
					s.free = append(s.free, k)
					done++
				}
			}
			end := uint16(int(tc.start) + tc.total) // wraps, as the ring idx does
			assert.Equal(t, end, p.u16(t, p.l.Avail+offIdx))
			assert.Equal(t, end, p.u16(t, p.l.Used+offIdx))
			assert.Equal(t, 16, p.drv.NumFree())
		})
	}
}

// TestConcurrent runs the driver and the device on two goroutines, with doorbells as
// channels, and moves many chains through a 128-entry queue (virtio-sst's size) with
// notification suppression on both sides.
func TestConcurrent(t *testing.T) {
	total := 100_000
	if testing.Short() {
		total = 10_000
	}
	for _, f := range []Features{{}, {EventIdx: true}} {
		t.Run(map[bool]string{false: "flags", true: "event_idx"}[f.EventIdx], func(t *testing.T) {
			p := newPair(t, 1<<20, sstQueueSize, f)
			kick := make(chan struct{}, 1) // available buffer notification
			irq := make(chan struct{}, 1)  // used buffer notification
			stop := make(chan struct{})
			ring := func(c chan struct{}) {
				select {
				case c <- struct{}{}:
				default:
				}
			}
			var kicks, irqs int
			var wg sync.WaitGroup
			devErr := make(chan error, 1)
			wg.Add(1)
			go func() { // device
				defer wg.Done()
				for {
					select {
					case <-kick:
					case <-stop:
						return
					}
					if err := p.dev.DisableNotifications(); err != nil {
						devErr <- err
						return
					}
					for {
						c, ok, err := p.dev.Pop()
						if err != nil {
							devErr <- err
							return
						}
						if !ok {
							pending, err := p.dev.EnableNotifications()
							if err != nil {
								devErr <- err
								return
							}
							if !pending {
								break
							}
							if err := p.dev.DisableNotifications(); err != nil {
								devErr <- err
								return
							}
							continue
						}
						if err := serve(p.dev, c); err != nil {
							devErr <- err
							return
						}
						if p.dev.NeedsInterrupt() {
							irqs++
							ring(irq)
						}
					}
				}
			}()

			s := newSlots(t, p.mem, sstQueueSize/2)
			bySlot := make([]int, sstQueueSize)
			seq := make([]uint64, len(s.req))
			sent, recv := 0, 0
			for recv < total {
				for sent < total && len(s.free) > 0 {
					k := s.free[len(s.free)-1]
					seq[k] = uint64(sent)
					require.NoError(t, p.mem.WriteU64(s.req[k], seq[k]))
					h, err := p.drv.Add([]Buffer{{Addr: s.req[k], Len: 8}, {Addr: s.rsp[k], Len: 8, Writable: true}})
					if errors.Is(err, ErrNoSpace) {
						break
					}
					require.NoError(t, err)
					s.free = s.free[:len(s.free)-1]
					bySlot[h] = k
					sent++
				}
				notify, err := p.drv.Publish()
				require.NoError(t, err)
				if notify {
					kicks++
					ring(kick)
				}
				got := 0
				for {
					e, ok, err := p.drv.PopUsed()
					require.NoError(t, err)
					if !ok {
						break
					}
					k := bySlot[e.ID]
					v, err := p.mem.ReadU64(s.rsp[k])
					require.NoError(t, err)
					require.Equal(t, answer(seq[k]), v, "chain %d", seq[k])
					s.free = append(s.free, k)
					recv++
					got++
				}
				if got > 0 || (sent < total && len(s.free) > 0) {
					continue
				}
				pending, err := p.drv.EnableInterrupts()
				require.NoError(t, err)
				if !pending {
					select {
					case <-irq:
					case err := <-devErr:
						t.Fatal(err)
					case <-time.After(10 * time.Second):
						t.Fatalf("stuck: sent %d, received %d", sent, recv)
					}
				}
				require.NoError(t, p.drv.DisableInterrupts())
			}
			close(stop)
			wg.Wait()
			select {
			case err := <-devErr:
				t.Fatal(err)
			default:
			}
			t.Logf("%d chains, %d kicks, %d interrupts", total, kicks, irqs)
			assert.LessOrEqual(t, kicks, total)
			assert.LessOrEqual(t, irqs, total)
		})
	}
}

// TestConcurrentAdders has several goroutines Add and Publish on one Driver while another
// goroutine collects used chains and the device serves on a third: the Driver's own
// locking must keep the descriptor accounting exact.
func TestConcurrentAdders(t *testing.T) {
	const (
		adders   = 4
		perAdder = 2000
		slotsPer = 20 // 4·20 chains of 2 descriptors > 128: Add sees ErrNoSpace
	)
	p := newPair(t, 1<<20, sstQueueSize, Features{EventIdx: true})
	kick := make(chan struct{}, 1)
	stop := make(chan struct{})
	ring := func(c chan struct{}) {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // device: polls on kicks, no suppression, keeps the test simple
		defer wg.Done()
		for {
			select {
			case <-kick:
			case <-stop:
				return
			}
			for {
				c, ok, err := p.dev.Pop()
				if err != nil {
					panic(err)
				}
				if !ok {
					break
				}
				if err := serve(p.dev, c); err != nil {
					panic(err)
				}
			}
		}
	}()

	type pending struct {
		adder, slot int
		value       uint64
	}
	var mapMu sync.Mutex // makes "added" and "recorded" one step for the collector
	byHead := map[uint16]pending{}
	s := newSlots(t, p.mem, adders*slotsPer)
	freeSlots := make([]chan int, adders)
	for a := range freeSlots {
		freeSlots[a] = make(chan int, slotsPer)
		for k := 0; k < slotsPer; k++ {
			freeSlots[a] <- a*slotsPer + k
		}
	}
	var adderWG sync.WaitGroup
	for a := 0; a < adders; a++ {
		adderWG.Add(1)
		go func() {
			defer adderWG.Done()
			for j := 0; j < perAdder; j++ {
				k := <-freeSlots[a]
				v := uint64(a)<<32 | uint64(j)
				if err := p.mem.WriteU64(s.req[k], v); err != nil {
					panic(err)
				}
				for {
					mapMu.Lock()
					h, err := p.drv.Add([]Buffer{{Addr: s.req[k], Len: 8}, {Addr: s.rsp[k], Len: 8, Writable: true}})
					if err == nil {
						byHead[h] = pending{a, k, v}
					}
					mapMu.Unlock()
					if err == nil {
						break
					}
					if !errors.Is(err, ErrNoSpace) {
						panic(err)
					}
					ring(kick)
					time.Sleep(10 * time.Microsecond)
				}
				mapMu.Lock()
				notify, err := p.drv.Publish()
				mapMu.Unlock()
				if err != nil {
					panic(err)
				}
				if notify {
					ring(kick)
				}
			}
		}()
	}

	got := make([]int, adders)
	deadline := time.Now().Add(30 * time.Second)
	for n := 0; n < adders*perAdder; {
		e, ok, err := p.drv.PopUsed()
		require.NoError(t, err)
		if !ok {
			require.True(t, time.Now().Before(deadline), "stuck after %d chains", n)
			ring(kick) // the device ignores suppression here; make sure it looks
			time.Sleep(10 * time.Microsecond)
			continue
		}
		mapMu.Lock()
		pd, found := byHead[e.ID]
		delete(byHead, e.ID)
		mapMu.Unlock()
		require.True(t, found, "head %d not in flight", e.ID)
		v, err := p.mem.ReadU64(s.rsp[pd.slot])
		require.NoError(t, err)
		require.Equal(t, answer(pd.value), v)
		require.Equal(t, uint64(got[pd.adder]), pd.value&0xffffffff, "adder %d in order", pd.adder)
		got[pd.adder]++
		freeSlots[pd.adder] <- pd.slot
		n++
	}
	adderWG.Wait()
	close(stop)
	wg.Wait()
	assert.Equal(t, sstQueueSize, p.drv.NumFree())
	checkAccounting(t, p.drv)
}
