package sstdev

import (
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/virtqueue"
)

// Sizes and limits of the emulated driver.
const (
	// MaxDevices is how many devices the driver supports: /dev/sst0 … /dev/sst15.
	MaxDevices = 16
	// QueueSize is the number of entries of each of the three virtqueues.
	QueueSize = protocol.QueueSize
	// descsPerRequest is the length of a request chain: the request, then the response.
	descsPerRequest = 2
	// NumSlots is the number of requests a device keeps in flight at once: every slot's
	// chain takes two descriptors, so NumSlots chains fill the request queue.
	NumSlots = QueueSize / descsPerRequest
	// NumEventBuffers is how many SSTEvent buffers the driver keeps posted on the event
	// queue.
	NumEventBuffers = 8
	// bufferAlign aligns every buffer in guest memory.
	bufferAlign = 8
	// GuestMemorySize is the guest memory of one device: three queues, the slots' buffers
	// and the event buffers, with room to spare.
	GuestMemorySize = 1 << 20

	// DefaultTimeout is how long a Write waits for the device's answer, as the reference
	// driver's 5000 ms.
	DefaultTimeout = 5 * time.Second
	// DevicePrefix is the start of every device path; the index follows.
	DevicePrefix = "/dev/sst"
)

// DriverFeatures are the features the driver accepts when the device offers them: every
// virtio-sst bit (so GET_INFO reports them as capabilities), EVENT_IDX notification
// suppression and VIRTIO_F_VERSION_1. Indirect descriptors are not accepted: the driver
// always places direct two-descriptor chains.
const DriverFeatures = protocol.BaseFeatures | protocol.FeatureEvents | protocol.FeatureEventIdx | protocol.FeatureVersion1

// Backend is the virtio device a Device drives; *virtiodev.Device implements it. The
// Device owns its Backend once bound: Close resets it and, if it implements io.Closer,
// closes it.
type Backend interface {
	// OfferedFeatures, AckFeatures, Attach and Reset are the device's status and feature
	// negotiation, queue set-up (DRIVER_OK) and reset.
	OfferedFeatures() protocol.Feature
	AckFeatures(f protocol.Feature) error
	Attach(mem *virtqueue.GuestMemory, layouts [protocol.NumQueues]virtqueue.Layout, interrupt func(queue int)) error
	Reset()
	// Notify is the available-buffer notification (the queue's doorbell); it must not
	// block.
	Notify(queue int)
	// ConfigSpace reads the device's config space.
	ConfigSpace() protocol.ConfigSpace
}

// Config configures a Device.
type Config struct {
	// Index is the device number N of /dev/sstN, 0 … MaxDevices-1.
	Index int
	// Backend is the device to bind at once; nil leaves the Device unbound (Open fails
	// with ENODEV) until Bind.
	Backend Backend
	// Timeout bounds each Write: waiting for a free slot and for the answer
	// (DefaultTimeout when zero).
	Timeout time.Duration
	// Features are the features the driver accepts (DriverFeatures when zero); the
	// negotiated set is what the device offers of them.
	Features protocol.Feature
	// Logger receives probe, event and error logs; the zero Logger discards them.
	Logger zerolog.Logger
}

func (c *Config) setDefaults() error {
	if c.Index < 0 || c.Index >= MaxDevices {
		return &ConfigError{Field: "Index", Reason: fmt.Sprintf("%d is outside 0 … %d", c.Index, MaxDevices-1)}
	}
	if c.Timeout < 0 {
		return &ConfigError{Field: "Timeout", Reason: fmt.Sprintf("negative (%v)", c.Timeout)}
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Features == 0 {
		c.Features = DriverFeatures
	}
	return nil
}

// Path returns the device path of index i: "/dev/sst" followed by i.
func Path(i int) string { return fmt.Sprintf("%s%d", DevicePrefix, i) }
