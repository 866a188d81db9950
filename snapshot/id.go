package snapshot

import (
	"encoding/hex"
	"fmt"

	blake3 "snapforge/snapshot/b3"
)

// ID names a chunk, tree or pack: the BLAKE3-256 hash of its plaintext bytes.
type ID [32]byte

// Hash returns the ID of b.
func Hash(b []byte) ID { return ID(blake3.Sum256(b)) }

// String returns the ID as 64 lowercase hex digits, the form b3sum prints.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first 12 hex digits, for messages.
func (id ID) Short() string { return hex.EncodeToString(id[:6]) }

// IsZero reports whether id is the zero value (no ID).
func (id ID) IsZero() bool { return id == ID{} }

// ParseID parses 64 hex digits.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 64 {
		return id, fmt.Errorf("parse id %q: want 64 hex digits, have %d", s, len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("parse id %q: %w", s, err)
	}
	return id, nil
}
