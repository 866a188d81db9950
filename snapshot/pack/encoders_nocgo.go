//go:build !cgo

package pack

// Without cgo the pure-Go encoders compress everything: large blobs at the
// fastest level, groups at the default level, or the fastest for
// EffortFast.
func pickEncoders() (blob, group [efforts]frameEncoder, name string) {
	b, g := goEncoders()
	return [efforts]frameEncoder{b, b}, [efforts]frameEncoder{g, b}, "zstd (Go: klauspost/compress, fastest and default levels)"
}
