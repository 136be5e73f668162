package optrace

import (
	"context"
	"io"
)

// Log writes the JSON Lines op log: one timing record per line, per op and per TIME entry.
// Lines are written by a goroutine from a bounded buffer; what does not fit is dropped and
// counted, never waited for.
type Log struct {
	sink *sink
}

// NewLog starts a log on w; bufferBytes bounds what waits for w (DefaultBufferBytes if ≤ 0).
func NewLog(w io.Writer, bufferBytes int) *Log {
	return &Log{sink: newSink(w, bufferBytes)}
}

// Add queues one line per record. scratch is reused for the encoding and returned.
func (l *Log) Add(recs []Record, scratch []byte) []byte {
	b := scratch[:0]
	for i := range recs {
		b = recs[i].AppendJSON(b)
		b = append(b, '\n')
	}
	if len(b) > 0 {
		l.sink.add(b)
	}
	return b
}

// addEncoded queues one line per encoded record.
func (l *Log) addEncoded(encoded [][]byte, scratch []byte) []byte {
	b := scratch[:0]
	for _, js := range encoded {
		b = append(append(b, js...), '\n')
	}
	if len(b) > 0 {
		l.sink.add(b)
	}
	return b
}

// Stats returns what the log's writer has done (items are frames: one per Add).
func (l *Log) Stats() SinkStats { return l.sink.stats() }

// Close writes the lines still pending. It does not close the underlying writer.
func (l *Log) Close() error { return l.CloseContext(context.Background()) }

// CloseContext is Close bounded by ctx: if the writer is still stuck in a write when ctx
// ends, the lines not written are counted as dropped and the error wraps ErrWriterStuck.
func (l *Log) CloseContext(ctx context.Context) error { return l.sink.close(ctx, nil) }
