package main

import (
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// byteSize is a flag value in bytes, accepted as a plain count ("4096") or with a unit:
// IEC ("512KiB", "1GiB", up to EiB), SI ("1kB", "2GB", powers of 1000) or "B". It prints
// in the largest IEC unit that represents it exactly, e.g. 1073741824 as "1GiB".
type byteSize int64

// byteUnits are the accepted unit suffixes and their sizes, IEC first (the printed form).
var byteUnits = []struct {
	suffix string
	size   int64
}{
	{"EiB", 1 << 60}, {"PiB", 1 << 50}, {"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"EB", 1e18}, {"PB", 1e15}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"kB", 1e3}, {"KB", 1e3},
	{"B", 1},
}

// parseByteSize parses s as byteSize documents; sizes are non-negative and at most
// 2^63-1 bytes.
func parseByteSize(s string) (byteSize, error) {
	t := strings.TrimSpace(s)
	size := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, size = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.size
			break
		}
	}
	n, err := strconv.ParseUint(t, 10, 63)
	if err != nil {
		return 0, fmt.Errorf("%q: want a whole number of bytes, optionally with a unit such as KiB, MiB, GiB or GB", s)
	}
	hi, lo := bits.Mul64(n, uint64(size))
	if hi != 0 || lo > math.MaxInt64 {
		return 0, fmt.Errorf("%q: more than 2^63-1 bytes", s)
	}
	return byteSize(lo), nil
}

// String prints b in the largest IEC unit that divides it, or in bytes.
func (b byteSize) String() string {
	if b > 0 {
		for _, u := range byteUnits[:6] {
			if int64(b)%u.size == 0 {
				return strconv.FormatInt(int64(b)/u.size, 10) + u.suffix
			}
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// Set implements flag.Value.
func (b *byteSize) Set(s string) error {
	v, err := parseByteSize(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// Get implements flag.Getter: the size in bytes, as an int64.
func (b *byteSize) Get() any { return int64(*b) }
