package virtiodev

import (
	"time"

	"github.com/rs/zerolog"

	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/virtqueue"
)

// Queue indices of the virtio-sst device. Requests and their responses both travel on
// QueueRequest; QueueResponse exists (the driver sets it up) but is never used;
// QueueEvent carries SSTEvent buffers from device to driver.
const (
	QueueRequest  = 0
	QueueResponse = 1
	QueueEvent    = 2
	// NumQueues is the number of virtqueues of the device.
	NumQueues = 3
	// QueueSize is the maximum (and the reference's only) size of each virtqueue.
	QueueSize = 128
	// MaxQueuePairs is SSTConfig.max_queues: one request queue.
	MaxQueuePairs = 1
)

// Defaults of Config.
const (
	DefaultReconnectMin = 50 * time.Millisecond
	DefaultReconnectMax = time.Second
	DefaultEventBacklog = 64
)

// Transport feature bits (VirtIO 1.x §6) the device offers besides the virtio-sst bits of
// package protocol. They live in the same 64-bit feature word.
const (
	FeatureIndirectDesc protocol.Feature = 1 << virtqueue.FeatureIndirectDesc
	FeatureEventIdx     protocol.Feature = 1 << virtqueue.FeatureEventIdx
	FeatureVersion1     protocol.Feature = 1 << 32
)

// Feature sets. The device always offers BaseFeatures and TransportFeatures, and adds
// protocol.FeatureEvents while it is connected to the SST component.
const (
	BaseFeatures      = protocol.FeatureEcho | protocol.FeatureCompute | protocol.FeatureMemory | protocol.FeatureReset
	TransportFeatures = FeatureIndirectDesc | FeatureEventIdx | FeatureVersion1
	// SupportedFeatures is every bit the device may ever offer; AckFeatures accepts any
	// subset of it.
	SupportedFeatures = BaseFeatures | protocol.FeatureEvents | TransportFeatures
	// DeviceFeatureMask selects the device-specific bits (0–23) of a feature word: what
	// GET_INFO reports as capabilities and the config space as features.
	DeviceFeatureMask protocol.Feature = 1<<24 - 1
)

// Config configures a Device.
type Config struct {
	// DeviceID is SSTConfig.device_id (the QEMU property device-id).
	DeviceID uint32
	// Dialer opens the byte stream to the SST component (layer 5): PipeDialer for an
	// in-process component, UnixDialer for an external one (--sst-socket). Nil means an
	// in-process sstcomponent with its default configuration, owned by the device.
	Dialer Dialer
	// ReconnectMin and ReconnectMax bound the exponential back-off between connection
	// attempts (defaults 50 ms and 1 s).
	ReconnectMin, ReconnectMax time.Duration
	// ResponseTimeout, when positive, is how long the oldest request sent to layer 5 may
	// wait for its answer; past it the device drops the connection, answers everything
	// in flight with TIMEOUT and reconnects. Zero waits forever (layer 3 has its own
	// 5 s timeout).
	ResponseTimeout time.Duration
	// EventBacklog is how many events the device keeps while the driver has no event
	// buffer posted (default 64); beyond it the oldest event is dropped and counted.
	EventBacklog int
	// Logger receives link changes (info, warn) and faulty chains (debug, warn); the zero
	// value logs nothing.
	Logger zerolog.Logger
}

func (c *Config) setDefaults() error {
	if c.ReconnectMin <= 0 {
		c.ReconnectMin = DefaultReconnectMin
	}
	if c.ReconnectMax <= 0 {
		c.ReconnectMax = DefaultReconnectMax
	}
	if c.ReconnectMax < c.ReconnectMin {
		return &ConfigError{Field: "ReconnectMax", Reason: "smaller than ReconnectMin"}
	}
	if c.ResponseTimeout < 0 {
		return &ConfigError{Field: "ResponseTimeout", Reason: "negative"}
	}
	if c.EventBacklog < 0 {
		return &ConfigError{Field: "EventBacklog", Reason: "negative"}
	}
	if c.EventBacklog == 0 {
		c.EventBacklog = DefaultEventBacklog
	}
	return nil
}
