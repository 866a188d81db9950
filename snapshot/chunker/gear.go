package chunker

// gearSeed seeds the splitmix64 generator that fills the gear table:
// "snapforg" in ASCII. Changing it changes every chunk boundary.
const gearSeed = 0x736e6170666f7267

// gear maps each byte value to a pseudo-random 64-bit word for the rolling
// hash. It is filled once at init and never written again.
var gear [256]uint64

func init() {
	state := uint64(gearSeed)
	for i := range gear {
		gear[i] = splitmix64(&state)
	}
}

// splitmix64 advances state and returns its next output (Steele, Lea and
// Flood, "Fast splittable pseudorandom number generators", 2014).
func splitmix64(state *uint64) uint64 {
	*state += 0x9e3779b97f4a7c15
	z := *state
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}
