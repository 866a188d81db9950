package index

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// badgerLogger routes Badger's log lines to our slog.Logger. Badger's INFO
// and DEBUG chatter (table loads, compactions, memtable flushes) becomes
// Debug; its warnings and errors keep their level, because they report real
// trouble (a truncated log, a failed compaction) that must not be hidden.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.log(slog.LevelError, f, a) }
func (b badgerLogger) Warningf(f string, a ...any) { b.log(slog.LevelWarn, f, a) }
func (b badgerLogger) Infof(f string, a ...any)    { b.log(slog.LevelDebug, f, a) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.log(slog.LevelDebug, f, a) }

func (b badgerLogger) log(level slog.Level, f string, a []any) {
	ctx := context.Background() // Badger's background goroutines have no ctx to hand down
	if !b.l.Enabled(ctx, level) {
		return // skip the Sprintf: Badger logs a lot at DEBUG
	}
	b.l.Log(ctx, level, strings.TrimSpace(fmt.Sprintf(f, a...)))
}
