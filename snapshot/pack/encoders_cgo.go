//go:build cgo

package pack

import (
	"runtime"

	czstd "github.com/DataDog/zstd"
)

// The C encoder's level for blobs and for groups at EffortDefault: zstd's
// default, 3. On
// the benchmark dataset (one core, 1 MiB groups) it compresses a
// database's 16 KiB pages to 123.8 MB in 1.25 s where the Go encoder's
// default level takes 2.8 s for 125.2 MB, small source files to 29.7 MB
// in 0.49 s against 30.8 MB in 0.73 s, and logs in large chunks to 57.7 MB
// in 0.93 s against the Go encoder's fastest level, 60.8 MB in 1.08 s.
//
// EffortFast is level 2, which since zstd 1.5 is, for inputs over 256 KiB
// (a group, a large chunk), the fast strategy (one hash table of 2^16
// entries, matches of 6 bytes or more) where level 3 is the double-fast one
// (two tables, matches from 5 bytes); on smaller inputs level 2 is a
// double-fast with smaller tables (`zstd -2 --show-default-cparams`). Measured with
// `zstd -b -B1M` on this VM: a SQLite database's pages 2.3 % larger than at
// level 3 in 71 % of the time, logs 2.3 % larger in 76 %, but small source
// files 22 % larger (their repeats are long and far apart, which the
// default level's second table finds).
const (
	cLevel     = 3
	cLevelFast = 2
)

func pickEncoders() (blob, group [efforts]frameEncoder, name string) {
	ctxs := make(chan czstd.Ctx, 2*runtime.GOMAXPROCS(0))
	c, f := &cEncoder{cLevel, ctxs}, &cEncoder{cLevelFast, ctxs}
	return [efforts]frameEncoder{c, f}, [efforts]frameEncoder{c, f}, "zstd in C (github.com/DataDog/zstd), level 3, or 2 for data it compresses nearly as well"
}

// cEncoder compresses with the C library's one-shot API at one level. A
// compression context holds about a megabyte of tables: contexts are
// kept for reuse (two per core, enough for every compressing goroutine),
// not made for each frame; one made beyond that is freed by its finalizer.
// Both levels share the contexts: a context takes the level of each call
// and resizes its tables when it must (level 2's are smaller).
type cEncoder struct {
	level int
	ctxs  chan czstd.Ctx
}

func (c *cEncoder) encode(dst, src []byte) []byte {
	var ctx czstd.Ctx
	select {
	case ctx = <-c.ctxs:
	default:
		ctx = czstd.NewCtx()
	}
	out, err := ctx.CompressLevel(dst[:0], src, c.level)
	select {
	case c.ctxs <- ctx:
	default:
	}
	if err != nil {
		// The library fails only where it cannot allocate its tables:
		// the Go encoder's default level then does the work.
		_, g := goEncoders()
		return g.encode(dst, src)
	}
	return out
}

func (c *cEncoder) bound(n int) int { return czstd.CompressBound(n) }
