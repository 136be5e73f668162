package optrace

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
)

// TraceSummary is what CheckTrace found in a trace.
type TraceSummary struct {
	Events    int  // events of any phase
	Truncated bool // the closing brackets were missing (cut off before Close)
	// OpCount and OpDurUS are, per device pid, the ops track's X events and their summed
	// dur in µs.
	OpCount map[int]int
	OpDurUS map[int]float64
	// HostSpans counts the X events on the host process.
	HostSpans int
}

// traceEvent is the part of a Chrome trace event CheckTrace reads. Numbers stay raw so
// that a non-integer pid or tid is caught.
type traceEvent struct {
	Name *string         `json:"name"`
	Ph   *string         `json:"ph"`
	Cat  string          `json:"cat"`
	Pid  json.RawMessage `json:"pid"`
	Tid  json.RawMessage `json:"tid"`
	Ts   *float64        `json:"ts"`
	Dur  *float64        `json:"dur"`
	Args json.RawMessage `json:"args"`
}

// CheckTrace parses a trace as Trace writes it and checks what a viewer relies on: the
// object form with a traceEvents array (closing brackets may be missing), every event
// with a name and a phase, integer pid and tid, every X event with ts and dur ≥ 0, slices on
// each track nested (a slice that starts inside another ends inside it), and device tracks
// (simulated time, cat "op") never sharing a process with host spans (wall clock).
func CheckTrace(data []byte) (*TraceSummary, error) {
	sum := &TraceSummary{OpCount: map[int]int{}, OpDurUS: map[int]float64{}}
	trimmed := bytes.TrimSpace(data)
	var doc struct {
		TraceEvents []json.RawMessage `json:"traceEvents"`
	}
	if err := json.Unmarshal(trimmed, &doc); err != nil {
		// Cut off: complete what a viewer completes (drop a partial last event, close).
		fixed, ok := closeTruncated(trimmed)
		if !ok {
			return nil, fmt.Errorf("optrace: trace is not JSON: %w", err)
		}
		if err2 := json.Unmarshal(fixed, &doc); err2 != nil {
			return nil, fmt.Errorf("optrace: trace is not JSON, even closed: %w", err)
		}
		sum.Truncated = true
	}
	if doc.TraceEvents == nil {
		return nil, fmt.Errorf("optrace: no traceEvents array")
	}
	type span struct{ ts, end float64 }
	type track struct{ pid, tid int64 }
	tracks := map[track][]span{}
	clocks := map[int64]string{} // pid → "sim" or "host"
	for i, raw := range doc.TraceEvents {
		var ev traceEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, fmt.Errorf("optrace: event %d: %w", i, err)
		}
		sum.Events++
		if ev.Name == nil || ev.Ph == nil {
			return nil, fmt.Errorf("optrace: event %d has no name or ph", i)
		}
		pid, err := integer(ev.Pid)
		if err != nil {
			return nil, fmt.Errorf("optrace: event %d (%s): pid: %w", i, *ev.Name, err)
		}
		tid, err := integer(ev.Tid)
		if err != nil {
			return nil, fmt.Errorf("optrace: event %d (%s): tid: %w", i, *ev.Name, err)
		}
		if *ev.Ph != "X" {
			continue
		}
		if ev.Ts == nil || ev.Dur == nil || *ev.Ts < 0 || *ev.Dur < 0 {
			return nil, fmt.Errorf("optrace: X event %d (%s) needs ts and dur ≥ 0", i, *ev.Name)
		}
		clock := "host"
		if ev.Cat == "op" {
			clock = "sim"
			sum.OpCount[int(pid)]++
			sum.OpDurUS[int(pid)] += *ev.Dur
		} else {
			sum.HostSpans++
		}
		if c, ok := clocks[pid]; ok && c != clock {
			return nil, fmt.Errorf("optrace: process %d mixes simulated and wall-clock slices (event %d)", pid, i)
		}
		clocks[pid] = clock
		k := track{pid, tid}
		tracks[k] = append(tracks[k], span{*ev.Ts, *ev.Ts + *ev.Dur})
	}
	for k, spans := range tracks {
		// Longer first among equal starts, so that a parent precedes its children.
		sort.SliceStable(spans, func(a, b int) bool {
			if spans[a].ts != spans[b].ts {
				return spans[a].ts < spans[b].ts
			}
			return spans[a].end > spans[b].end
		})
		var open []span
		for _, s := range spans {
			for len(open) > 0 && open[len(open)-1].end <= s.ts+nestSlackUS {
				open = open[:len(open)-1]
			}
			if len(open) > 0 && s.end > open[len(open)-1].end+nestSlackUS {
				p := open[len(open)-1]
				return nil, fmt.Errorf("optrace: track pid %d tid %d: slice [%g, %g] overlaps [%g, %g] without nesting", k.pid, k.tid, s.ts, s.end, p.ts, p.end)
			}
			open = append(open, s)
		}
	}
	return sum, nil
}

// nestSlackUS tolerates the float rounding of ts+dur (µs with ns digits) when nesting.
const nestSlackUS = 1e-6

// integer parses a JSON number that must be an integer.
func integer(raw json.RawMessage) (int64, error) {
	if len(raw) == 0 {
		return 0, fmt.Errorf("missing")
	}
	s := string(raw)
	if strings.ContainsAny(s, ".eE\"") {
		return 0, fmt.Errorf("%s is not an integer", s)
	}
	var v float64
	if err := json.Unmarshal(raw, &v); err != nil || v != math.Trunc(v) {
		return 0, fmt.Errorf("%s is not an integer", s)
	}
	return int64(v), nil
}

// closeTruncated turns a trace cut off between events into a closed one: the text up to
// the last complete event, then "]}".
func closeTruncated(b []byte) ([]byte, bool) {
	if !bytes.HasPrefix(b, []byte(`{"traceEvents":[`)) {
		return nil, false
	}
	// Events are separated by ",\n"; the last complete one ends before the last separator
	// or at the end.
	for end := len(b); end > 0; {
		cand := append(append([]byte(nil), bytes.TrimRight(b[:end], ",\n ")...), "]}"...)
		if json.Valid(cand) {
			return cand, true
		}
		i := bytes.LastIndex(b[:end], []byte(",\n"))
		if i < 0 {
			break
		}
		end = i
	}
	return nil, false
}
