package main

import (
	"bytes"
	"math"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/urfave/cli/v2"
)

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want byteSize
	}{
		{"4096", 4096},
		{"0", 0},
		{"1GiB", 1 << 30},
		{"512MiB", 512 << 20},
		{"64KiB", 64 << 10},
		{" 3 TiB ", 3 << 40},
		{"7EiB", 7 << 60},
		{"100B", 100},
		{"2GB", 2e9},
		{"1kB", 1000},
		{"1KB", 1000},
		{"9223372036854775807", math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseByteSize(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
	for _, bad := range []string{"", "GiB", "-1", "1.5GiB", "1 GiBs", "0x10", "8EiB", "9223372036854775808", "1QiB", "one"} {
		t.Run("bad "+bad, func(t *testing.T) {
			_, err := parseByteSize(bad)
			assert.Error(t, err)
		})
	}
}

func TestByteSizeString(t *testing.T) {
	tests := []struct {
		in   byteSize
		want string
	}{
		{0, "0"}, {1, "1"}, {1000, "1000"}, {1024, "1KiB"}, {1536, "1536"}, {3 << 19, "1536KiB"},
		{1 << 30, "1GiB"}, {4 << 30, "4GiB"}, {1 << 62, "4EiB"}, {math.MaxInt64, "9223372036854775807"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.in.String())
			back, err := parseByteSize(tt.in.String())
			require.NoError(t, err)
			assert.Equal(t, tt.in, back, "String parses back")
		})
	}
}

// serveFlagValues runs `serve args...` with its action replaced, returning what the limits
// flags read.
func serveFlagValues(t *testing.T, args ...string) (opBytes, inflightBytes int64, handles int, err error) {
	t.Helper()
	cmd := serveCommand()
	cmd.Action = func(c *cli.Context) error {
		opBytes, inflightBytes, handles = byteFlag(c, "max-op-bytes"), byteFlag(c, "max-inflight-bytes"), c.Int("max-device-handles")
		return nil
	}
	app := &cli.App{Name: "sstemu", Commands: []*cli.Command{cmd}, Writer: &bytes.Buffer{}, ErrWriter: &bytes.Buffer{}}
	err = app.Run(append([]string{"sstemu", "serve"}, args...))
	return
}

func TestServeLimitFlags(t *testing.T) {
	tests := []struct {
		name         string
		args         []string
		env          map[string]string
		op, inflight int64
		handles      int
	}{
		{name: "defaults", op: 1 << 30, inflight: 4 << 30, handles: 64},
		{name: "IEC sizes and the new name", args: []string{"--max-op-bytes", "512MiB", "--max-inflight-bytes", "8GiB", "--max-device-handles", "8"},
			op: 512 << 20, inflight: 8 << 30, handles: 8},
		{name: "plain bytes and the old name", args: []string{"--max-op-bytes", "4096", "--max-inflight", "3"}, op: 4096, inflight: 4 << 30, handles: 3},
		{name: "old environment variable", env: map[string]string{"SSTEMU_MAX_INFLIGHT": "5", "SSTEMU_MAX_OP_BYTES": "2MiB"},
			op: 2 << 20, inflight: 4 << 30, handles: 5},
		{name: "new environment variable", env: map[string]string{"SSTEMU_MAX_DEVICE_HANDLES": "6"}, op: 1 << 30, inflight: 4 << 30, handles: 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			op, inflight, handles, err := serveFlagValues(t, tt.args...)
			require.NoError(t, err)
			assert.Equal(t, tt.op, op)
			assert.Equal(t, tt.inflight, inflight)
			assert.Equal(t, tt.handles, handles)
		})
	}
	_, _, _, err := serveFlagValues(t, "--max-op-bytes", "1.5GiB")
	assert.ErrorContains(t, err, "max-op-bytes")
}

func TestServeHelp(t *testing.T) {
	var out bytes.Buffer
	app := &cli.App{Name: "sstemu", Commands: []*cli.Command{serveCommand()}, Writer: &out, ErrWriter: &out}
	require.NoError(t, app.Run([]string{"sstemu", "serve", "--help"}))
	help := out.String()
	for _, cat := range []string{catFront, catLayers, catModel, catLogging} {
		assert.Regexp(t, regexp.MustCompile(`(?m)^   `+regexp.QuoteMeta(cat)+`$`), help, "category %q", cat)
	}
	assert.Regexp(t, `--max-op-bytes SIZE .*\(default: 1GiB\)`, help)
	assert.Regexp(t, `--max-inflight-bytes SIZE .*\(default: 4GiB\)`, help)
	assert.Regexp(t, `--max-device-handles value, --max-inflight value `, help)
	assert.Regexp(t, `--device PATH +a real device file`, help)
	assert.Regexp(t, `--devices value +how many emulated devices`, help)
	for _, f := range serveCommand().Flags {
		if vf, ok := f.(cli.VisibleFlag); ok && vf.IsVisible() {
			cf, ok := f.(cli.CategorizableFlag)
			require.True(t, ok)
			assert.NotEmpty(t, cf.GetCategory(), "flag %v has a category", f.Names())
		}
	}
}

func TestServeRejectsBadRecordAndWindowFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"record-buffer zero", []string{"--record-buffer", "0"}, "--record-buffer 0: want 1 byte"},
		{"record-buffer not a size", []string{"--record-buffer", "-5"}, "record-buffer"},
		{"ops-ring too large", []string{"--ops-ring", "100000000"}, "--ops-ring 100000000: want 0 (no /ops) … 1048576"},
		{"ops-ring negative", []string{"--ops-ring", "-1"}, "--ops-ring -1"},
		{"sst-window below -1", []string{"--sst-window", "-2"}, "--sst-window -2: want -1 (no bound) or more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := &cli.App{Name: "sstemu", Commands: []*cli.Command{serveCommand()}, Writer: &bytes.Buffer{}, ErrWriter: &bytes.Buffer{}}
			err := app.Run(append([]string{"sstemu", "serve", "--listen", "127.0.0.1:0"}, tt.args...))
			require.ErrorContains(t, err, tt.want)
		})
	}
	cmd := serveCommand()
	var buffer int64
	cmd.Action = func(c *cli.Context) error { buffer = byteFlag(c, "record-buffer"); return checkRecordFlags(c) }
	app := &cli.App{Name: "sstemu", Commands: []*cli.Command{cmd}, Writer: &bytes.Buffer{}, ErrWriter: &bytes.Buffer{}}
	require.NoError(t, app.Run([]string{"sstemu", "serve", "--record-buffer", "8MiB"}))
	assert.Equal(t, int64(8<<20), buffer)
}
