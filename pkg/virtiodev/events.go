package virtiodev

import "github.com/sstemu/sstemu/pkg/protocol"

// eventBacklog keeps the events that wait for the driver to post an event buffer. It is
// bounded: when full, the oldest event makes room for the newest (link state matters more
// when recent) and the loss is counted. The Device guards it with evMu.
type eventBacklog struct {
	buf  []protocol.Event
	head int
	n    int
}

func newEventBacklog(capacity int) eventBacklog {
	return eventBacklog{buf: make([]protocol.Event, capacity)}
}

// push appends e and reports whether an older event had to be dropped for it.
func (b *eventBacklog) push(e protocol.Event) (dropped bool) {
	if b.n == len(b.buf) {
		b.head = (b.head + 1) % len(b.buf)
		b.n--
		dropped = true
	}
	b.buf[(b.head+b.n)%len(b.buf)] = e
	b.n++
	return dropped
}

// front returns the oldest event; n > 0.
func (b *eventBacklog) front() protocol.Event { return b.buf[b.head] }

// pop removes the oldest event; n > 0.
func (b *eventBacklog) pop() {
	b.head = (b.head + 1) % len(b.buf)
	b.n--
}

func (b *eventBacklog) reset() { b.head, b.n = 0, 0 }
