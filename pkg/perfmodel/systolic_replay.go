package perfmodel

import (
	"fmt"
	"strings"
)

// This file replays SCALE-Sim v2's memory system (memory/double_buffered_scratchpad_mem.py
// service_memory_requests and the buffers it drives) over the demand rows of
// compute/systolic_compute_{os,ws,is}.py, one demand row per cycle, without building any
// matrix: each demand row's addresses are computed from the fold geometry. It is what the
// closed form in systolic.go cannot give: DRAM counts when an operand does not fit its
// SRAM, and the stall cycles of USER mode (finite DRAM bandwidth). The algorithm is
// described in docs/models.md; the code follows v2's behaviour, not its code.

// MaxReplayWork bounds a replay's steps (replayWork: demand rows, lines, and in CALC mode
// the reads and address-table entries of spilling operands), 2^25. At the 20–100 million
// steps per second BenchmarkScaleSimReplay measures, that is at most about 1.5 s; CALC
// mode's address tables take 4 bytes per entry, at most 128 MiB; USER mode needs none.
const MaxReplayWork = 1 << 25

// BandwidthMode is SCALE-Sim's InterfaceBandwidth setting.
type BandwidthMode uint8

// The two modes. Their numeric values are the ParamInterfaceBandwidth encoding.
const (
	// BandwidthCalc ("CALC"): DRAM is as fast as needed; v2 reports the bandwidth it took.
	BandwidthCalc BandwidthMode = iota
	// BandwidthUser ("USER"): DRAM delivers DRAMWordsPerCycle words per cycle; the read
	// buffers prefetch in chunks and the array stalls when data is late.
	BandwidthUser
)

// String returns "CALC" or "USER".
func (b BandwidthMode) String() string {
	switch b {
	case BandwidthCalc:
		return "CALC"
	case BandwidthUser:
		return "USER"
	}
	return fmt.Sprintf("BandwidthMode(%d)", uint8(b))
}

// ParseBandwidthMode accepts "CALC" or "USER" in any letter case.
func ParseBandwidthMode(s string) (BandwidthMode, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "CALC":
		return BandwidthCalc, nil
	case "USER":
		return BandwidthUser, nil
	}
	return 0, &InvalidParamError{Kind: KindSystolic, Param: "InterfaceBandwidth", Value: s, Reason: "want CALC or USER"}
}

// ScaleSimConfig is the part of a SCALE-Sim v2 config file that the model reproduces.
type ScaleSimConfig struct {
	Rows, Cols uint64 // ArrayHeight, ArrayWidth
	Dataflow   Dataflow
	// IfmapKB, FilterKB, OfmapKB are the SRAM sizes in KiB (IfmapSramSzkB, …; v2's word
	// is one byte). Zero means large enough never to spill (in CALC mode with all three
	// zero, the closed form).
	IfmapKB, FilterKB, OfmapKB uint64
	Mode                       BandwidthMode
	// WordsPerCycle is the USER-mode DRAM bandwidth (Bandwidth), in words per cycle.
	WordsPerCycle uint64
}

// scaleSimDefaultWordsPerCycle is the Bandwidth of v2's example configs/scale.cfg, which the
// presets take for DRAMWordsPerCycle (used only in USER mode).
const scaleSimDefaultWordsPerCycle = 10

// v2's fixed memory-system constants (single_layer_sim.run, read_buffer*, write_buffer).
const (
	kib                = 1024 // bytes per kB in v2's SRAM sizes
	scaleSimSets       = 100  // a read buffer is split into 100 sets of addresses
	scaleSimActiveSets = 50   // active_buf_frac 0.5: half of the sets are active
)

// ScaleSimReplay returns what SCALE-Sim v2 reports for the op under cfg. A config whose
// SRAM sizes are all zero in CALC mode takes the closed form of ScaleSim; anything else
// is replayed, which fails with ErrReplayTooLarge beyond MaxReplayWork.
func ScaleSimReplay(cfg ScaleSimConfig, op Op) (ScaleSimCounts, error) {
	return ScaleSimReplayWithin(cfg, op, MaxReplayWork)
}

// ScaleSimReplayWithin is ScaleSimReplay with another bound on the replay's steps, for
// callers that can wait (about 20–100 million steps per second; CALC mode's address
// tables take up to 4 bytes per step).
func ScaleSimReplayWithin(cfg ScaleSimConfig, op Op, maxWork uint64) (ScaleSimCounts, error) {
	if err := op.Validate(); err != nil {
		return ScaleSimCounts{}, err
	}
	if err := cfg.validate(); err != nil {
		return ScaleSimCounts{}, err
	}
	closed, err := ScaleSim(cfg.Rows, cfg.Cols, cfg.Dataflow, op)
	if err != nil {
		return ScaleSimCounts{}, err
	}
	if !cfg.replays() {
		return closed, nil
	}
	if w := replayWork(cfg, op, closed); w > maxWork {
		return ScaleSimCounts{}, &ReplayTooLargeError{Op: op, Work: w, Max: maxWork}
	}
	return replay(cfg, op, closed), nil
}

// replays reports whether the config needs a replay: the closed form covers CALC mode
// with SRAMs that never spill.
func (cfg ScaleSimConfig) replays() bool {
	return cfg.Mode != BandwidthCalc || cfg.IfmapKB != 0 || cfg.FilterKB != 0 || cfg.OfmapKB != 0
}

func (cfg ScaleSimConfig) validate() error {
	if err := positive(KindSystolic, namedValue{"ArrayRows", cfg.Rows}, namedValue{"ArrayCols", cfg.Cols}); err != nil {
		return err
	}
	if !cfg.Dataflow.valid() {
		return &InvalidParamError{Kind: KindSystolic, Param: "Dataflow", Value: cfg.Dataflow.String(), Reason: "must be os, ws or is"}
	}
	switch cfg.Mode {
	case BandwidthCalc:
	case BandwidthUser:
		if cfg.WordsPerCycle == 0 {
			return &InvalidParamError{Kind: KindSystolic, Param: "DRAMWordsPerCycle", Value: "0", Reason: "USER mode needs a DRAM bandwidth"}
		}
	default:
		return &InvalidParamError{Kind: KindSystolic, Param: "InterfaceBandwidth", Value: cfg.Mode.String(), Reason: "must be CALC (0) or USER (1)"}
	}
	for _, kb := range []uint64{cfg.IfmapKB, cfg.FilterKB, cfg.OfmapKB} {
		if kb > MaxSRAMKB {
			return &InvalidParamError{Kind: KindSystolic, Param: "SRAM size", Value: fmt.Sprint(kb), Reason: fmt.Sprintf("must be at most %d KiB", uint64(MaxSRAMKB))}
		}
	}
	if cfg.WordsPerCycle > MaxDRAMWordsPerCycle {
		return &InvalidParamError{Kind: KindSystolic, Param: "DRAMWordsPerCycle", Value: fmt.Sprint(cfg.WordsPerCycle), Reason: fmt.Sprintf("must be at most %d", uint64(MaxDRAMWordsPerCycle))}
	}
	return nil
}

// MaxSRAMKB bounds each SRAM size and MaxDRAMWordsPerCycle the USER bandwidth: 2^30 KiB
// (1 TiB) and 2^24 words per cycle, far above any real device, so that the replay's int64
// arithmetic cannot overflow (v2 counts every prefetch as a whole number of bandwidth-wide
// request cycles, so a replay's DRAM count is at most its 2^25 prefetches times about
// 2^25 + bw words).
const (
	MaxSRAMKB            = 1 << 30
	MaxDRAMWordsPerCycle = 1 << 24
)

// replayWork is the number of steps a replay takes: one per demand row (the write
// buffer costs O(1) per row and per drain) and, for each input operand that the replay
// cannot skip (see fitsBuffer), one per row plus, in USER mode, one per line of its SRAM
// reads and, in CALC mode, one per SRAM read and per element of its address table. It
// saturates at 2^64-1.
func replayWork(cfg ScaleSimConfig, op Op, s ScaleSimCounts) uint64 {
	c := checked{}
	sr, sc, t := cfg.Dataflow.Mapping(op)
	perFold := c.add("", c.add("", cfg.Rows, cfg.Cols), t) - 2
	if cfg.Dataflow != OutputStationary {
		perFold = c.add("", perFold, cfg.Rows)
	}
	rows := c.mul("", c.mul("", ceilDiv(sr, cfg.Rows), ceilDiv(sc, cfg.Cols)), perFold)
	w := rows
	ifFits, fFits := cfg.fits(op, s)
	operand := func(kb, reads, distinct uint64) {
		w = c.add("", w, rows)
		if cfg.Mode == BandwidthUser {
			w = c.add("", w, reads/ceilDiv(kb*kib, scaleSimSets))
		} else {
			w = c.add("", w, c.add("", reads, distinct))
		}
	}
	if !ifFits {
		operand(cfg.IfmapKB, s.SRAMIfmapReads, c.mul("", op.M, op.K))
	}
	if !fFits {
		operand(cfg.FilterKB, s.SRAMFilterReads, c.mul("", op.K, op.N))
	}
	if c.err != nil {
		return ^uint64(0)
	}
	return w
}

// fits reports, for the ifmap and the filter, whether the replay can skip the operand's
// read buffer because v2 neither stalls on it nor reads any of it twice from DRAM. In
// CALC mode that is when the operand's distinct addresses fill fewer than 50 sets or no
// address is read twice; in USER mode when the whole operand is in the first window.
func (cfg ScaleSimConfig) fits(op Op, s ScaleSimCounts) (ifmap, filter bool) {
	a, b := op.M*op.K, op.K*op.N // no overflow: both fit in SRAMIfmapReads, SRAMFilterReads
	if cfg.Mode == BandwidthUser {
		return userFits(cfg.IfmapKB, a), userFits(cfg.FilterKB, b)
	}
	return calcFits(cfg.IfmapKB, a, s.SRAMIfmapReads), calcFits(cfg.FilterKB, b, s.SRAMFilterReads)
}

func calcFits(kb, distinct, reads uint64) bool {
	return kb == 0 || reads == distinct || distinct < scaleSimActiveSets*(kb*kib/scaleSimSets)
}

func userFits(kb, distinct uint64) bool {
	if kb == 0 {
		return true
	}
	total := kb * kib
	perLine := ceilDiv(total, scaleSimSets)
	return distinct/perLine+1 <= ceilDiv((total+1)/2, perLine)
}

// stream describes one operand's demand rows within a fold. Row r, column c holds the
// body element t = r − pre − (c if skew), valid when tLo ≤ t < tEnd and c < used; its
// address is addr(c, t).
type stream struct {
	pre, tLo, tEnd, used int64
	skew                 bool
	addr                 func(c, t int64) int64
	// at returns where element (c, t) sits in the operand's prefetch matrix: its block
	// and row in the block (its column is c). Unused for the ofmap.
	at func(c, t int64) (block, row int64)
}

// body returns the body element t of row r, column c.
func (s *stream) body(r, c int64) int64 {
	t := r - s.pre
	if s.skew {
		t -= c
	}
	return t
}

// span returns the valid column range [lo, hi] of row r (lo > hi when the row is empty).
func (s *stream) span(r int64) (lo, hi int64) {
	if !s.skew {
		if t := r - s.pre; t < s.tLo || t >= s.tEnd {
			return 0, -1
		}
		return 0, s.used - 1
	}
	return max(0, r-s.pre-s.tEnd+1), min(s.used-1, r-s.pre-s.tLo)
}

// geometry is one fold's three demand streams (ifmap, filter, ofmap) and its row count.
type geometry struct {
	rows, cols, sr, sc, t int64
	m, n, k               int64
	d                     Dataflow
}

func newGeometry(cfg ScaleSimConfig, op Op) geometry {
	sr, sc, t := cfg.Dataflow.Mapping(op)
	return geometry{rows: int64(cfg.Rows), cols: int64(cfg.Cols), sr: int64(sr), sc: int64(sc), t: int64(t),
		m: int64(op.M), n: int64(op.N), k: int64(op.K), d: cfg.Dataflow}
}

func (g geometry) folds() (rowFolds, colFolds int64) {
	return (g.sr + g.rows - 1) / g.rows, (g.sc + g.cols - 1) / g.cols
}

// perFold is the number of demand rows of every fold (see scaleSimCalc).
func (g geometry) perFold() int64 {
	if g.d == OutputStationary {
		return g.rows + g.cols + g.t - 2
	}
	return 2*g.rows + g.cols + g.t - 2
}

// fold returns the streams of fold (fr, fc) with uR rows and uC columns in use.
func (g geometry) fold(fr, fc int64) (ifmap, filter, ofmap stream) {
	R, C, T, K, N := g.rows, g.cols, g.t, g.k, g.n
	uR, uC := min(R, g.sr-fr*R), min(C, g.sc-fc*C)
	r0, c0 := fr*R, fc*C
	switch g.d {
	case OutputStationary:
		ifmap = stream{tEnd: T, used: uR, skew: true, addr: func(c, t int64) int64 { return (r0+c)*K + t },
			at: func(_, t int64) (int64, int64) { return fr, t }}
		filter = stream{tEnd: T, used: uC, skew: true, addr: func(c, t int64) int64 { return (c0+c)*K + t },
			at: func(_, t int64) (int64, int64) { return fc, t }}
		// The R×C output block, flipped so its last row leaves first, after T−1 idle rows.
		ofmap = stream{pre: T - 1, tLo: R - uR, tEnd: R, used: uC, skew: true,
			addr: func(c, q int64) int64 { return (r0+R-1-q)*N + c0 + c }}
	case WeightStationary:
		ifmap = stream{pre: R, tEnd: T, used: uR, skew: true, addr: func(c, t int64) int64 { return t*K + r0 + c },
			at: func(_, t int64) (int64, int64) { return fr, t }}
		filter = stream{tLo: R - uR, tEnd: R, used: uC, addr: func(c, q int64) int64 { return (c0+c)*K + r0 + R - 1 - q },
			at: func(_, q int64) (int64, int64) { return fc, r0 + R - 1 - q }}
		ofmap = stream{pre: 2*R - 1, tEnd: T, used: uC, skew: true, addr: func(c, t int64) int64 { return t*N + c0 + c }}
	case InputStationary:
		ifmap = stream{tLo: R - uR, tEnd: R, used: uC, addr: func(c, q int64) int64 { return (c0+c)*K + r0 + R - 1 - q },
			at: func(_, q int64) (int64, int64) { return fc, r0 + R - 1 - q }}
		filter = stream{pre: R, tEnd: T, used: uR, skew: true, addr: func(c, t int64) int64 { return t*K + r0 + c },
			at: func(_, t int64) (int64, int64) { return fr, t }}
		ofmap = stream{pre: 2*R - 1, tEnd: T, used: uC, skew: true, addr: func(c, t int64) int64 { return (c0+c)*N + t }}
	}
	return ifmap, filter, ofmap
}

// rowAddrs appends the addresses of stream s's demand row r to buf, in column order.
func (s *stream) rowAddrs(buf []int64, r int64) []int64 {
	buf = buf[:0]
	lo, hi := s.span(r)
	for c := lo; c <= hi; c++ {
		buf = append(buf, s.addr(c, s.body(r, c)))
	}
	return buf
}

// readBuffer is one of v2's two read buffers as the replay sees it.
type readBuffer interface {
	// read services demand row r of stream s arriving at cycle and returns the cycle the
	// row is served: cycle + 1 (the hit latency) plus any stall.
	read(cycle int64, s *stream, r int64) int64
	// dramReads returns the words read from DRAM once the replay is over.
	dramReads() int64
}

// unbounded stands for a zero ("never spills") SRAM size: far more words than any replay
// can touch, small enough that the buffers' arithmetic on it cannot overflow.
const unbounded = 1 << 56

// words returns an SRAM size in words (v2's word is a byte).
func words(kb uint64) int64 {
	if kb == 0 {
		return unbounded
	}
	return int64(kb) * kib
}

// estimateBuffer is v2's CALC-mode read buffer (read_buffer_estimate_bw.py). It never
// stalls. An address that is neither in the window nor in the set being filled enters
// that set, and counts as one DRAM read; a set holds floor(words/100) addresses. The
// window is every full set until 50 have filled; then, each time the set count reaches
// the next multiple of 50, it restarts empty at that set.
type estimateBuffer struct {
	addrs       []int64 // the row being serviced
	perSet      int64
	lastSet     []int32 // address → the set it last entered, −1 for never
	cur, inCur  int64   // the set being filled and its size
	windowStart int64
	windowEnd   int64 // the last set of the window once it is full (read_buffer_set_end_id)
	inserted    int64
}

func newEstimateBuffer(kb uint64, space int64) *estimateBuffer {
	b := &estimateBuffer{perSet: words(kb) / scaleSimSets, lastSet: make([]int32, space), windowEnd: scaleSimActiveSets - 1}
	for i := range b.lastSet {
		b.lastSet[i] = -1
	}
	return b
}

func (b *estimateBuffer) read(cycle int64, s *stream, r int64) int64 {
	b.addrs = s.rowAddrs(b.addrs, r)
	for _, a := range b.addrs {
		last := int64(b.lastSet[a])
		if last >= b.windowStart && (last < min(b.cur, b.windowEnd+1) || last == b.cur) {
			continue
		}
		b.lastSet[a] = int32(b.cur)
		b.inserted++
		if b.inCur++; b.inCur == b.perSet {
			b.inCur = 0
			if b.cur++; b.cur == b.windowEnd+1 {
				b.windowStart += scaleSimActiveSets
				b.windowEnd += scaleSimActiveSets
			}
		}
	}
	return cycle + 1
}

func (b *estimateBuffer) dramReads() int64 { return b.inserted }

// userBuffer is v2's USER-mode read buffer (read_buffer.py). Its prefetch order (the
// operand's prefetch matrix, flattened) is cut into lines of ceil(words/100) addresses;
// the active half of the buffer is a window of lines. A demand address outside the window
// moves the window on by one prefetch half and issues ceil(prefetch/bw) DRAM request
// cycles, each bw words, one cycle after the previous prefetch completed; the row waits
// for the last prefetch it triggered. A demand row's addresses are consecutive in the
// prefetch order (v2 rolls the skewed operands' prefetch matrices out along the same
// anti-diagonals the skewed rows read), so the buffer checks each line a row touches once,
// from the ranks of the row's first and last address, and needs no table.
type userBuffer struct {
	order                prefetchOrder
	perLine              int64
	lines, active, chunk int64 // line count, lines in the window, lines per prefetch
	start                int64 // first line of the window
	bw                   int64
	firstWords, perFetch int64 // DRAM words of the first fill, request cycles per prefetch
	last                 int64 // cycle the last prefetch completes
	reads                int64
	started              bool
}

// prefetchOrder is an operand's prefetch matrix as v2's create_*_prefetch_mat build it:
// blocks (one per fold of the operand's spatial axis) stacked vertically, each
// blockRows × width, of which the first used(block) columns are valid (only the last block
// can be narrower), read row by row or, when diagonal, along anti-diagonals from the
// lowest row up.
type prefetchOrder struct {
	blocks, blockRows, width int64
	used                     func(block int64) int64
	diagonal                 bool
}

// slots is the number of cells of the prefetch matrix, padding included.
func (o *prefetchOrder) slots() int64 { return o.blocks * o.blockRows * o.width }

// rank returns the position of the valid cell (block, row, col) among the valid cells in
// prefetch order.
func (o *prefetchOrder) rank(block, row, col int64) int64 {
	if !o.diagonal { // all blocks before the last are full width
		return block*o.blockRows*o.width + row*o.used(block) + col
	}
	rows, w := o.blocks*o.blockRows, o.width
	r := block*o.blockRows + row
	d := r + col
	p0, u := (o.blocks-1)*o.blockRows, o.used(o.blocks-1) // the padded cells: rows ≥ p0, cols ≥ u
	n := below(0, rows, 0, w, d) - below(p0, rows, u, w, d)
	// Valid cells of diagonal d below row r (they come first: lower rows first).
	lo, hi := max(r+1, d-w+1), min(d, rows-1)
	if hi >= lo {
		n += hi - lo + 1
		if plo, phi := max(lo, p0), min(hi, d-u); phi >= plo {
			n -= phi - plo + 1
		}
	}
	return n
}

// below counts the cells (r, c) of [r0, r1) × [c0, c1) with r + c < d.
func below(r0, r1, c0, c1, d int64) int64 {
	w := c1 - c0
	if r0 >= r1 || w <= 0 {
		return 0
	}
	e := d - c0 // row r holds clamp(e − r, 0, w) such cells
	var n int64
	if full := min(r1-1, e-w); full >= r0 {
		n += (full - r0 + 1) * w
	}
	if lo, hi := max(r0, e-w+1), min(r1-1, e-1); hi >= lo {
		n += (hi-lo+1)*e - (lo+hi)*(hi-lo+1)/2
	}
	return n
}

func newUserBuffer(kb uint64, bw, distinct int64, o prefetchOrder) *userBuffer {
	total := words(kb)
	perLine := ceilDiv64(total, scaleSimSets)
	activeWords := (total + 1) / 2 // ceil(total · 0.5)
	prefetchWords := total - activeWords
	b := &userBuffer{order: o, perLine: perLine, bw: bw}
	b.lines = distinct/perLine + 1
	b.active = min(b.lines, ceilDiv64(activeWords, perLine))
	b.chunk = min(b.lines-b.active, ceilDiv64(prefetchWords, perLine))
	b.firstWords = min(ceilDiv64(activeWords, bw), ceilDiv64(o.slots(), bw)) * bw
	b.perFetch = ceilDiv64(prefetchWords, bw)
	return b
}

func ceilDiv64(a, b int64) int64 { return (a + b - 1) / b }

func (b *userBuffer) read(cycle int64, s *stream, r int64) int64 {
	if !b.started {
		b.started = true
		b.reads += b.firstWords
		b.last = cycle - 1
	}
	served := cycle + 1
	lo, hi := s.span(r)
	if b.active == b.lines || lo > hi { // the whole operand is in the window, or no reads
		return served
	}
	blk, row := s.at(lo, s.body(r, lo))
	first := b.order.rank(blk, row, lo) / b.perLine
	blk, row = s.at(hi, s.body(r, hi))
	last := b.order.rank(blk, row, hi) / b.perLine
	for l := first; l <= last; l++ {
		if k := b.prefetches(l); k > 0 {
			b.start = (b.start + k*b.chunk) % b.lines
			b.last += k * (b.perFetch + 1)
			b.reads += k * b.perFetch * b.bw
			served = max(served, b.last)
		}
	}
	return served
}

// prefetches returns how many prefetches v2 issues before line l is in the window: it
// moves the window on by chunk lines per prefetch until l is in it. Unrolled (lines
// counted without the wrap), the window [start, start+active) slides forward by
// chunk ≤ active, so it reaches the next copy x of l at or beyond its end after
// floor((x − start − active)/chunk) + 1 prefetches, skipping none.
func (b *userBuffer) prefetches(l int64) int64 {
	ahead := l - b.start // the first copy of l at or after start
	if ahead < 0 {
		ahead += b.lines
	}
	if ahead < b.active {
		return 0
	}
	return (ahead-b.active)/b.chunk + 1
}

func (b *userBuffer) dramReads() int64 { return b.reads }

// writeBuffer is v2's OFMAP write buffer (write_buffer.py). Outputs are packed into
// lines of bw words. Whenever the buffer holds more than its drain half and no drain is
// under way, the partly filled line is closed and ceil(drain/bw) lines go to DRAM, one
// per cycle; a write that finds the buffer full waits for that drain. v2 counts a drained
// chunk's words as lines·bw minus the empty slots of its last line only, so a partly
// filled line that is not last in its chunk counts (and frees) its empty slots too.
type writeBuffer struct {
	total, drain, bw int64
	free             int64
	fill             int64   // words in the line being filled
	lines            int64   // closed lines
	partial          []int64 // closed partly filled lines not yet drained: index, words
	drained          int64   // first line not yet drained
	drainEnd         int64   // cycle the current drain completes
	writes           int64
}

func newWriteBuffer(kb uint64, bw int64) *writeBuffer {
	total := words(kb)
	return &writeBuffer{total: total, drain: total - (total+1)/2, bw: bw, free: total}
}

func (w *writeBuffer) closeLine() {
	if w.fill == 0 {
		return
	}
	if w.fill < w.bw {
		w.partial = append(w.partial, w.lines, w.fill)
	}
	w.lines++
	w.fill = 0
}

// drainChunk sends the next chunk of lines to DRAM from cycle start and returns the
// cycle its last line is sent.
func (w *writeBuffer) drainChunk(start int64) int64 {
	end := min(w.drained+ceilDiv64(w.drain, w.bw), w.lines)
	n := end - w.drained
	data := n * w.bw
	for len(w.partial) > 0 && w.partial[0] < end {
		if w.partial[0] == end-1 {
			data -= w.bw - w.partial[1]
		}
		w.partial = w.partial[2:]
	}
	w.writes += data
	w.free += data
	w.drained = end
	return start + n - 1
}

// write stores one demand row's n outputs arriving at cycle and returns the cycle the row
// is done. Between two events (a drain starting, or a write waiting for one) the buffer
// only fills, so the outputs up to the next event are stored in one step.
func (w *writeBuffer) write(cycle, n int64) int64 {
	cur := cycle
	for n > 0 {
		draining := cur < w.drainEnd
		// The store after which the next event happens: while draining, the one that
		// leaves no free space; otherwise the one that fills more than the drain half.
		j := max(w.free-(w.total-w.drain)+1, 1)
		if draining {
			j = max(w.free, 1)
		}
		if j > n {
			w.store(n)
			return cur
		}
		w.store(j)
		n -= j
		if draining {
			cur = w.drainEnd
		} else {
			w.closeLine()
			w.drainEnd = w.drainChunk(cur)
		}
	}
	return cur
}

// store packs n outputs into lines.
func (w *writeBuffer) store(n int64) {
	w.lines += (w.fill + n) / w.bw
	w.fill = (w.fill + n) % w.bw
	w.free -= n
}

// flush drains everything left after the last demand row, from cycle on.
func (w *writeBuffer) flush(cycle int64) {
	w.closeLine()
	for w.drained < w.lines {
		cycle = w.drainChunk(cycle) + 1
	}
}

// prefetchOrders returns the ifmap and filter prefetch orders of v2's
// create_{ifmap,filter}_prefetch_mat for the dataflow.
func (g geometry) prefetchOrders() (ifmap, filter prefetchOrder) {
	R, C := g.rows, g.cols
	rowFolds, colFolds := g.folds()
	usedR := func(f int64) int64 { return min(R, g.sr-f*R) }
	usedC := func(f int64) int64 { return min(C, g.sc-f*C) }
	switch g.d {
	case OutputStationary:
		ifmap = prefetchOrder{blocks: rowFolds, blockRows: g.t, width: R, used: usedR, diagonal: true}
		filter = prefetchOrder{blocks: colFolds, blockRows: g.t, width: C, used: usedC, diagonal: true}
	case WeightStationary:
		ifmap = prefetchOrder{blocks: rowFolds, blockRows: g.t, width: R, used: usedR, diagonal: true}
		filter = prefetchOrder{blocks: colFolds, blockRows: g.sr, width: C, used: usedC}
	case InputStationary:
		ifmap = prefetchOrder{blocks: colFolds, blockRows: g.sr, width: C, used: usedC}
		filter = prefetchOrder{blocks: rowFolds, blockRows: g.t, width: R, used: usedR, diagonal: true}
	}
	return ifmap, filter
}

// fitsBuffer stands for a read buffer the replay skips (ScaleSimConfig.fits): it never
// stalls and reads a known number of words from DRAM.
type fitsBuffer struct{ reads int64 }

func (fitsBuffer) read(cycle int64, _ *stream, _ int64) int64 { return cycle + 1 }
func (b fitsBuffer) dramReads() int64                         { return b.reads }

// newReadBuffer returns the read buffer of one input operand of space distinct
// addresses, with prefetch order o.
func newReadBuffer(cfg ScaleSimConfig, kb uint64, fits bool, space int64, o prefetchOrder) readBuffer {
	if cfg.Mode == BandwidthUser {
		bw := int64(cfg.WordsPerCycle)
		if fits { // only the first fill of the active half
			total := words(kb)
			return fitsBuffer{reads: min(ceilDiv64((total+1)/2, bw), ceilDiv64(o.slots(), bw)) * bw}
		}
		return newUserBuffer(kb, bw, space, o)
	}
	if fits {
		return fitsBuffer{reads: space}
	}
	return newEstimateBuffer(kb, space)
}

// replay runs the demand rows through v2's memory system; closed holds the SRAM counts.
// It computes in int64 without overflow checks: the caller bounded replayWork by
// MaxReplayWork, and the row count (at least Sr, Sc, T and each fold's R + C) is part of
// it, so every dimension and address stays below 2^25; with MaxSRAMKB and
// MaxDRAMWordsPerCycle every cycle and word count stays below about 2^52.
func replay(cfg ScaleSimConfig, op Op, closed ScaleSimCounts) ScaleSimCounts {
	g := newGeometry(cfg, op)
	ifFits, fFits := cfg.fits(op, closed)
	io, fo := g.prefetchOrders()
	ifBuf := newReadBuffer(cfg, cfg.IfmapKB, ifFits, g.m*g.k, io)
	fBuf := newReadBuffer(cfg, cfg.FilterKB, fFits, g.k*g.n, fo)
	wbw := g.cols // CALC mode drains one array width per cycle
	if cfg.Mode == BandwidthUser {
		wbw = int64(cfg.WordsPerCycle)
	}
	wb := newWriteBuffer(cfg.OfmapKB, wbw)
	rowFolds, colFolds := g.folds()
	perFold := g.perFold()
	var stall, i, done int64
	for fc := range colFolds {
		for fr := range rowFolds {
			is, fs, os := g.fold(fr, fc)
			for r := range perFold {
				cycle := i + stall
				st := ifBuf.read(cycle, &is, r) - cycle - 1
				st = max(st, fBuf.read(cycle, &fs, r)-cycle-1)
				lo, hi := os.span(r)
				done = wb.write(cycle, max(hi-lo+1, 0))
				stall += max(st, done-cycle)
				i++
			}
		}
	}
	wb.flush(done)
	s := closed
	s.TotalCycles, s.StallCycles = uint64(done), uint64(stall)
	s.DRAMIfmapReads, s.DRAMFilterReads, s.DRAMOfmapWrites = uint64(ifBuf.dramReads()), uint64(fBuf.dramReads()), uint64(wb.writes)
	return s
}
