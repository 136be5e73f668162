package virtqueue_test

import (
	"fmt"

	"github.com/sstemu/sstemu/pkg/virtqueue"
)

// Example sends one request through a 128-entry queue: the driver adds a chain of a
// readable request and a writable response buffer, the device pops it, answers and
// returns it.
func Example() {
	mem := virtqueue.NewGuestMemory(1 << 20)
	layout, _ := mem.AllocQueue(128)
	feat := virtqueue.Features{EventIdx: true}
	drv, _ := virtqueue.NewDriver(mem, layout, feat)
	dev, _ := virtqueue.NewDeviceQueue(mem, layout, feat)

	// Driver side: buffers in guest memory, one chain, publish, maybe notify.
	req, _ := mem.Alloc(5, 8)
	rsp, _ := mem.Alloc(16, 8)
	_ = mem.WriteAt([]byte("hello"), req)
	head, _ := drv.Add([]virtqueue.Buffer{
		{Addr: req, Len: 5},
		{Addr: rsp, Len: 16, Writable: true},
	})
	notify, _ := drv.Publish()
	fmt.Println("notify device:", notify)

	// Device side: pop, read the request, write the response, return the chain.
	c, ok, err := dev.Pop()
	if err != nil || !ok {
		fmt.Println("pop:", ok, err)
		return
	}
	in := make([]byte, c.ReadableLen())
	_, _ = c.Gather(in)
	n, _ := c.Scatter([]byte("echo " + string(in)))
	_ = dev.PushUsed(c.Head, uint32(n))
	fmt.Println("interrupt driver:", dev.NeedsInterrupt())

	// Driver side: collect the used chain.
	e, _, _ := drv.PopUsed()
	out := make([]byte, e.Len)
	_ = mem.ReadAt(out, rsp)
	fmt.Println(e.ID == head, string(out))
	// Output:
	// notify device: true
	// interrupt driver: true
	// true echo hello
}
