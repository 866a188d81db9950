package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// NodeType is the kind of a tree entry.
type NodeType uint8

// Node types. The numbers are part of the tree format.
const (
	TypeFile     NodeType = 1
	TypeDir      NodeType = 2
	TypeSymlink  NodeType = 3
	TypeHardlink NodeType = 4 // another name of a file stored earlier in walk order
	TypeFIFO     NodeType = 5
	TypeDevice   NodeType = 6 // character or block device (Mode holds S_IFCHR/S_IFBLK)
)

var typeNames = map[NodeType]string{TypeFile: "file", TypeDir: "dir", TypeSymlink: "symlink",
	TypeHardlink: "hardlink", TypeFIFO: "fifo", TypeDevice: "device"}

func (t NodeType) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Node flags.
const (
	// FlagNoCache marks a file whose metadata must not be trusted by the next
	// incremental backup: it changed while read, or its timestamps were too
	// close to the backup's start to tell a later change apart (FAULTS D1).
	FlagNoCache uint8 = 1 << iota
	// FlagSQLite marks a database stored through SQLite's online backup.
	FlagSQLite
	// FlagChanged marks a file that kept changing while it was read; its
	// content is whatever the last read saw.
	FlagChanged
)

// ChunkRef is one chunk of a file's content.
type ChunkRef struct {
	ID   ID
	Size uint32
}

// Xattr is one extended attribute.
type Xattr struct {
	Name  string
	Value []byte
}

// Node is one entry of a tree: a directory's child. Name is raw bytes held
// in a string; it may be any valid Unix name (no '/', no NUL, not "." or "..").
type Node struct {
	Name    string
	Type    NodeType
	Flags   uint8
	Mode    uint32 // st_mode permission and special bits (07777), plus S_IFCHR/S_IFBLK for devices
	UID     uint32
	GID     uint32
	MTime   int64 // unix nanoseconds
	CTime   int64 // unix nanoseconds; only for change detection (FlagSQLite: a fingerprint, see sqliteState)
	Inode   uint64
	Rdev    uint64 // devices
	Size    int64
	Chunks  []ChunkRef // file and hardlink content
	Hash    ID         // whole-file BLAKE3 (file, hardlink)
	Target  string     // symlink target, or hardlink: the path of the first name
	Subtree ID         // dir
	Xattrs  []Xattr
}

// Tree is one directory's entries sorted by name bytes.
type Tree struct {
	Nodes []*Node
}

const treeMagic = "SFT1"

// maxTreeEntries bounds decoding (FAULTS D7 directories stay far below).
const maxTreeEntries = 8 << 20

// Encode serialises t. Nodes must be sorted and valid.
func (t *Tree) Encode() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(treeMagic)
	var tmp [binary.MaxVarintLen64]byte
	uv := func(v uint64) { b.Write(tmp[:binary.PutUvarint(tmp[:], v)]) }
	sv := func(v int64) { b.Write(tmp[:binary.PutVarint(tmp[:], v)]) }
	str := func(s string) { uv(uint64(len(s))); b.WriteString(s) }
	uv(uint64(len(t.Nodes)))
	prev := ""
	for i, n := range t.Nodes {
		if err := checkName(n.Name); err != nil {
			return nil, err
		}
		if i > 0 && n.Name <= prev {
			return nil, fmt.Errorf("encode tree: entries not sorted at %q", n.Name)
		}
		prev = n.Name
		str(n.Name)
		b.WriteByte(byte(n.Type))
		b.WriteByte(n.Flags)
		uv(uint64(n.Mode))
		uv(uint64(n.UID))
		uv(uint64(n.GID))
		sv(n.MTime)
		sv(n.CTime)
		uv(n.Inode)
		uv(n.Rdev)
		sv(n.Size)
		uv(uint64(len(n.Chunks)))
		for _, c := range n.Chunks {
			b.Write(c.ID[:])
			uv(uint64(c.Size))
		}
		b.Write(n.Hash[:])
		str(n.Target)
		b.Write(n.Subtree[:])
		uv(uint64(len(n.Xattrs)))
		for _, x := range n.Xattrs {
			str(x.Name)
			str(string(x.Value))
		}
	}
	return b.Bytes(), nil
}

// checkName rejects names a tree must never hold (FAULTS E1).
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("tree: empty name")
	case name == "." || name == "..":
		return fmt.Errorf("tree: forbidden name %q", name)
	case bytes.IndexByte([]byte(name), '/') >= 0:
		return fmt.Errorf("tree: name %q contains '/'", name)
	case bytes.IndexByte([]byte(name), 0) >= 0:
		return fmt.Errorf("tree: name %q contains NUL", name)
	}
	return nil
}

// DecodeTree parses an encoded tree, rejecting anything malformed: bad
// names, unsorted or duplicate entries, counts beyond the data.
func DecodeTree(data []byte) (*Tree, error) {
	d := decoder{b: data}
	if len(data) < 4 || string(data[:4]) != treeMagic {
		return nil, errors.New("decode tree: bad magic")
	}
	d.b = data[4:]
	n := d.uv()
	if d.err == nil && (n > maxTreeEntries || n > uint64(len(d.b))) {
		return nil, fmt.Errorf("decode tree: entry count %d exceeds data", n)
	}
	t := &Tree{Nodes: make([]*Node, 0, n)}
	prev := ""
	for i := uint64(0); i < n && d.err == nil; i++ {
		nd := &Node{}
		nd.Name = d.str()
		nd.Type = NodeType(d.byte())
		nd.Flags = d.byte()
		nd.Mode = uint32(d.uv())
		nd.UID = uint32(d.uv())
		nd.GID = uint32(d.uv())
		nd.MTime = d.sv()
		nd.CTime = d.sv()
		nd.Inode = d.uv()
		nd.Rdev = d.uv()
		nd.Size = d.sv()
		nc := d.uv()
		if d.err == nil && nc > uint64(len(d.b))/33 {
			return nil, fmt.Errorf("decode tree: chunk count %d exceeds data", nc)
		}
		if nc > 0 {
			nd.Chunks = make([]ChunkRef, nc)
			for j := range nd.Chunks {
				copy(nd.Chunks[j].ID[:], d.take(32))
				nd.Chunks[j].Size = uint32(d.uv())
			}
		}
		copy(nd.Hash[:], d.take(32))
		nd.Target = d.str()
		copy(nd.Subtree[:], d.take(32))
		nx := d.uv()
		if d.err == nil && nx > uint64(len(d.b))/2 {
			return nil, fmt.Errorf("decode tree: xattr count %d exceeds data", nx)
		}
		for j := uint64(0); j < nx && d.err == nil; j++ {
			nd.Xattrs = append(nd.Xattrs, Xattr{Name: d.str(), Value: []byte(d.str())})
		}
		if d.err != nil {
			break
		}
		if err := checkName(nd.Name); err != nil {
			return nil, fmt.Errorf("decode tree: %w", err)
		}
		if _, ok := typeNames[nd.Type]; !ok {
			return nil, fmt.Errorf("decode tree: entry %q has unknown type %d", nd.Name, nd.Type)
		}
		if i > 0 && nd.Name <= prev {
			return nil, fmt.Errorf("decode tree: entries not sorted or duplicated at %q", nd.Name)
		}
		if nd.Size < 0 {
			return nil, fmt.Errorf("decode tree: entry %q has negative size", nd.Name)
		}
		prev = nd.Name
		t.Nodes = append(t.Nodes, nd)
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode tree: %w", d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("decode tree: %d trailing bytes", len(d.b))
	}
	return t, nil
}

// Find returns the node called name, or nil.
func (t *Tree) Find(name string) *Node {
	i := sort.Search(len(t.Nodes), func(i int) bool { return t.Nodes[i].Name >= name })
	if i < len(t.Nodes) && t.Nodes[i].Name == name {
		return t.Nodes[i]
	}
	return nil
}

type decoder struct {
	b   []byte
	err error
}

var errShort = errors.New("truncated")

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = errShort
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	v := d.take(1)
	if v == nil {
		return 0
	}
	return v[0]
}

func (d *decoder) uv() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) sv() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	n := d.uv()
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = errShort
		return ""
	}
	return string(d.take(int(n)))
}
