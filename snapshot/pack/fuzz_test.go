package pack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/zeebo/blake3"
)

// FAULTS A2: any bytes given to ReadTrailer give entries that obey the format
// or an ErrCorrupt error, never a panic.
func FuzzReadTrailer(f *testing.F) {
	empty, _ := buildPack(f, nil)
	small, _ := smallPack(f, 3)
	f.Add(empty)
	f.Add(small)
	f.Add(small[:len(small)-1])
	f.Add(small[:len(small)/2])
	grouped, _, _ := groupPack(f)
	f.Add(grouped)
	f.Fuzz(func(t *testing.T, data []byte) {
		checkReadTrailer(t, data)
		// Mutations rarely keep the checksum right; reseal a copy so the
		// entry checks behind it get explored too.
		if len(data) >= minPackSize {
			tlen := int(binary.LittleEndian.Uint32(data[len(data)-footerSize:]))
			if tlen <= len(data)-footerSize {
				d := bytes.Clone(data)
				sum := blake3.Sum256(d[len(d)-footerSize-tlen : len(d)-footerSize])
				copy(d[len(d)-footerSize+4:], sum[:sumSize])
				checkReadTrailer(t, d)
			}
		}
	})
}

func checkReadTrailer(t *testing.T, data []byte) {
	blobs, err := ReadTrailer(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error not wrapping ErrCorrupt: %v", err)
		}
		return
	}
	next := uint64(headerSize)
	for i, b := range blobs {
		if b.Codec == CodecGroup && i > 0 && blobs[i-1].Codec == CodecGroup && b.Offset == blobs[i-1].Offset { // a further member
			if b.Stored != blobs[i-1].Stored || b.GroupOff != blobs[i-1].GroupOff+blobs[i-1].Raw || b.GroupRaw != blobs[i-1].GroupRaw {
				t.Fatalf("accepted group member %d %+v after %+v", i, b, blobs[i-1])
			}
			continue
		}
		if msg := checkEntry(b); msg != "" || b.Offset != next {
			t.Fatalf("accepted entry %d %+v (%s), want offset %d", i, b, msg, next)
		}
		if b.Codec == CodecGroup && (b.GroupOff != 0 || b.GroupRaw < b.Raw || b.GroupRaw > MaxBlobSize) {
			t.Fatalf("accepted group %d %+v", i, b)
		}
		next += uint64(b.Stored)
	}
	if next > uint64(len(data)) {
		t.Fatalf("accepted blobs ending at %d in %d bytes", next, len(data))
	}
}

// FAULTS A10: any stored bytes give exactly raw bytes or an ErrCorrupt error,
// never a panic.
func FuzzDecode(f *testing.F) {
	text, _ := Compress(nil, bytes.Repeat([]byte("snapforge "), 500))
	f.Add(text, CodecZstd, uint32(5000))
	f.Add(text, CodecZstd, uint32(4999))
	f.Add([]byte("abc"), CodecRaw, uint32(3))
	f.Add(rleFrame(64<<30, 8, 1, 1<<17), CodecZstd, uint32(1000))
	f.Add(rleFrame(1000, 2, 10, 1<<17), CodecZstd, uint32(1000))
	f.Add(rleFrame(0, 0, 3, 100), CodecZstd, uint32(300))
	f.Fuzz(func(t *testing.T, stored []byte, codec uint8, raw uint32) {
		raw %= 1<<20 + 1 // keep each run cheap; the bound is the same code for any raw
		out, err := Decode(nil, stored, codec, raw)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not wrapping ErrCorrupt: %v", err)
			}
			return
		}
		if len(out) != int(raw) {
			t.Fatalf("decoded %d bytes, want %d", len(out), raw)
		}
	})
}
