package virtqueue

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewLayout(t *testing.T) {
	// Sizes from the §2.7 table, worked out by hand:
	// size 128: desc 16·128 = 2048; avail 6+2·128 = 262 → ends at 2310; used aligned to
	// 4 → 2312; used 6+8·128 = 1030 → total 3342.
	// size 1: desc 16; avail 6+2 = 8 → ends at 24; used at 24, 6+8 = 14 → total 38.
	// size 32768: desc 524288; avail 6+65536 = 65542 → 589830; used at 589832, 6+262144.
	// size 2 at base 32: desc 32; avail at 64, 6+4 = 10 → 74; used at 76, 6+16 = 22 → 98.
	cases := []struct {
		base  uint64
		size  uint16
		want  Layout
		bytes uint64
	}{
		{0, 128, Layout{Size: 128, Desc: 0, Avail: 2048, Used: 2312}, 3342},
		{0, 1, Layout{Size: 1, Desc: 0, Avail: 16, Used: 24}, 38},
		{32, 2, Layout{Size: 2, Desc: 32, Avail: 64, Used: 76}, 98 - 32},
		{0, 32768, Layout{Size: 32768, Desc: 0, Avail: 524288, Used: 524288 + 65544}, 524288 + 65544 + 262150},
	}
	for _, tc := range cases {
		l, err := NewLayout(tc.base, tc.size)
		require.NoError(t, err)
		assert.Equal(t, tc.want, l)
		assert.Equal(t, tc.bytes, QueueBytes(tc.size))
		assert.Zero(t, l.Desc%DescAlign)
		assert.Zero(t, l.Avail%AvailAlign)
		assert.Zero(t, l.Used%UsedAlign)
	}
}

func TestNewLayoutRejects(t *testing.T) {
	cases := []struct {
		name  string
		base  uint64
		size  uint16
		field string
	}{
		{"size zero", 0, 0, "size"},
		{"size not a power of two", 0, 100, "size"},
		{"size 3", 0, 3, "size"},
		{"size above 32768", 0, 0xFFFF, "size"},
		{"misaligned base", 8, 128, "desc"},
		{"wraps the address space", ^uint64(0) - 15, 128, "desc"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewLayout(tc.base, tc.size)
			var le *LayoutError
			require.ErrorAs(t, err, &le)
			assert.Equal(t, tc.field, le.Field)
		})
	}
}

func TestLayoutValidate(t *testing.T) {
	mem := NewGuestMemory(4096)
	good := Layout{Size: 4, Desc: 0, Avail: 64, Used: 128}
	require.NoError(t, good.Validate(mem))
	cases := []struct {
		name  string
		l     Layout
		field string
	}{
		{"desc misaligned", Layout{Size: 4, Desc: 8, Avail: 100, Used: 200}, "desc"},
		{"avail odd", Layout{Size: 4, Desc: 0, Avail: 65, Used: 128}, "avail"},
		{"used not 4-aligned", Layout{Size: 4, Desc: 0, Avail: 64, Used: 130}, "used"},
		{"used past memory", Layout{Size: 4, Desc: 0, Avail: 64, Used: 4096 - 36}, "used"},
		{"desc past memory", Layout{Size: 4, Desc: 4096 - 48, Avail: 64, Used: 128}, "desc"},
		{"bad size", Layout{Size: 6, Desc: 0, Avail: 64, Used: 128}, "size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.l.Validate(mem)
			var le *LayoutError
			require.ErrorAs(t, err, &le)
			assert.Equal(t, tc.field, le.Field)
			_, err = NewDeviceQueue(mem, tc.l, Features{})
			require.Error(t, err)
			_, err = NewDriver(mem, tc.l, Features{})
			require.Error(t, err)
		})
	}
}

func TestFeatureBits(t *testing.T) {
	assert.Equal(t, Features{EventIdx: true}, FeaturesFromBits(1<<29))
	assert.Equal(t, Features{IndirectDesc: true}, FeaturesFromBits(1<<28))
	assert.Equal(t, uint64(0x30000000), Features{EventIdx: true, IndirectDesc: true}.Bits())
}
