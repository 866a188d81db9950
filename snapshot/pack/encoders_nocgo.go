//go:build !cgo

package pack

// Without cgo the pure-Go encoders compress everything.
func pickEncoders() (blob, group frameEncoder, name string) {
	b, g := goEncoders()
	return b, g, "zstd (Go: klauspost/compress, fastest and default levels)"
}
