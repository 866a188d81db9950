package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/zeebo/blake3"
)

// WalkFunc is called for every node under a tree in pre-order, with the
// node's raw slash-separated path relative to the snapshot root.
type WalkFunc func(rel string, n *Node) error

// SkipDir, returned by a WalkFunc for a directory, skips its contents.
//
//lint:ignore ST1012 named like io/fs.SkipDir, which it mirrors
var SkipDir = errors.New("skip this directory")

// Walk visits every node of the tree id in name-byte pre-order.
func (r *Repo) Walk(ctx context.Context, id ID, prefix string, fn WalkFunc) error {
	t, err := r.LoadTree(ctx, id)
	if err != nil {
		if prefix == "" {
			return err
		}
		return fmt.Errorf("%s: %w", DisplayName(prefix), err)
	}
	for _, n := range t.Nodes {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rel := n.Name
		if prefix != "" {
			rel = prefix + "/" + n.Name
		}
		err := fn(rel, n)
		if err == SkipDir {
			continue
		}
		if err != nil {
			return err
		}
		if n.Type == TypeDir {
			if err := r.Walk(ctx, n.Subtree, rel, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// FindNode returns the node at rel (slash-separated raw path) in snapshot m.
// The root is returned as a synthetic directory node.
func (r *Repo) FindNode(ctx context.Context, m *Manifest, rel string) (*Node, error) {
	id, err := m.TreeID()
	if err != nil {
		return nil, err
	}
	n := &Node{Type: TypeDir, Subtree: id, Mode: 0o755}
	rel = strings.Trim(rel, "/")
	if rel == "" || rel == "." {
		return n, nil
	}
	for _, name := range strings.Split(rel, "/") {
		if n.Type != TypeDir {
			return nil, fmt.Errorf("%s in %s: not a directory: %w", DisplayName(rel), m.BackupID, ErrNotFound)
		}
		t, err := r.LoadTree(ctx, n.Subtree)
		if err != nil {
			return nil, err
		}
		if n = t.Find(name); n == nil {
			return nil, fmt.Errorf("%s in %s: %w", DisplayName(rel), m.BackupID, ErrNotFound)
		}
	}
	return n, nil
}

// WriteContent streams the content of file node n to w, checking every
// chunk and, at the end, the whole-file hash. It returns the bytes written.
func (r *Repo) WriteContent(ctx context.Context, n *Node, w io.Writer) (int64, error) {
	var total int64
	err := r.streamContent(ctx, n, func(data []byte, _ int64) error {
		nw, err := w.Write(data)
		total += int64(nw)
		return err
	})
	return total, err
}

// prefetch is how many chunks are loaded (read, decompressed, hash-checked)
// ahead of the consumer: enough to keep both cores busy on one big file,
// few enough to bound memory (prefetch × 4 MiB).
const prefetch = 3

// streamContent calls fn with each chunk of file node n in order, with its
// offset. Chunks are loaded and checked concurrently ahead of fn; the
// whole-file BLAKE3 and size are checked at the end, so a caller sees a
// CorruptError rather than a success for any damaged content. The slice
// passed to fn is only valid during the call.
func (r *Repo) streamContent(ctx context.Context, n *Node, fn func(data []byte, off int64) error) error {
	if n.Type != TypeFile && n.Type != TypeHardlink {
		return fmt.Errorf("%s is a %s, not a file", DisplayName(n.Name), n.Type)
	}
	ctx, cancel := context.WithCancel(ctx)
	type loaded struct {
		data []byte
		err  error
	}
	results := make([]chan loaded, len(n.Chunks))
	for i := range results {
		results[i] = make(chan loaded, 1) // loaders never block, even when the consumer stops early
	}
	slots := make(chan struct{}, prefetch)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }() // stop the loaders before waiting for them
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, c := range n.Chunks {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				data, err := r.LoadBlob(ctx, c.ID, nil)
				if err == nil && len(data) != int(c.Size) {
					err = &CorruptError{ID: c.ID, Detail: "chunk size differs from the tree"}
				}
				results[i] <- loaded{data, err}
			}()
		}
	}()
	h := blake3.New()
	var off int64
	for i := range n.Chunks {
		var l loaded
		select {
		case l = <-results[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		<-slots
		if l.err != nil {
			return l.err
		}
		h.Write(l.data)
		if err := fn(l.data, off); err != nil {
			return err
		}
		off += int64(len(l.data))
	}
	var sum ID
	copy(sum[:], h.Sum(nil))
	if sum != n.Hash || off != n.Size {
		return &CorruptError{ID: n.Hash, Detail: fmt.Sprintf("file %s: content hash or size does not match the snapshot", DisplayName(n.Name))}
	}
	return nil
}

// Change is one difference between two snapshots.
type Change struct {
	Kind    string // added, removed, changed
	Path    string // display form
	PathB64 string `json:",omitempty"`
	Type    string
	OldSize int64
	NewSize int64
}

// Diff compares two snapshots by their manifests' items.
func Diff(a, b *Manifest) []Change {
	old := map[string]Item{}
	for _, it := range a.Items {
		old[it.RawPath()] = it
	}
	var out []Change
	seen := map[string]bool{}
	for _, it := range b.Items {
		p := it.RawPath()
		seen[p] = true
		o, ok := old[p]
		switch {
		case !ok:
			out = append(out, Change{Kind: "added", Path: it.Path, PathB64: it.PathB64, Type: it.Type, NewSize: it.Size})
		case o.Type != it.Type || o.Size != it.Size || o.Blake3 != it.Blake3 || o.RawTarget() != it.RawTarget():
			out = append(out, Change{Kind: "changed", Path: it.Path, PathB64: it.PathB64, Type: it.Type, OldSize: o.Size, NewSize: it.Size})
		}
	}
	for _, it := range a.Items {
		if !seen[it.RawPath()] {
			out = append(out, Change{Kind: "removed", Path: it.Path, PathB64: it.PathB64, Type: it.Type, OldSize: it.Size})
		}
	}
	return out
}
