package snapshot

import (
	"context"
	"fmt"
	"os"
	"sort"
)

// RepairReport summarises an index rebuild.
type RepairReport struct {
	Packs        int      `json:"packs"`
	Blobs        int      `json:"blobs"`
	DamagedPacks []string `json:"damaged_packs,omitempty"`
	Snapshots    int      `json:"snapshots"`
}

// RepairIndex rebuilds the index from the pack trailers: the old index
// directory is removed and a new one filled with every complete pack on
// disk. Snapshots (manifests) are untouched; run Verify afterwards to see
// whether any chunk they need is missing. Open the repository with
// AllowMissingIndex to repair a missing or unusable index.
func (r *Repo) RepairIndex(ctx context.Context) (rep *RepairReport, err error) {
	params := map[string]any{}
	defer func() {
		outcome := "ok"
		if err != nil {
			outcome = "failed: " + err.Error()
		}
		if rep != nil {
			params["packs"], params["blobs"], params["damaged_packs"] = rep.Packs, rep.Blobs, len(rep.DamagedPacks)
		}
		r.AuditAs(ctx, "repair", params, outcome)
	}()
	if r.idx != nil {
		r.idx.Close()
		r.idx = nil
	}
	dir := r.dir("index")
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("repair index: remove old index: %w", err)
	}
	idx, err := r.opts.OpenIndex(dir, true)
	if err != nil {
		return nil, fmt.Errorf("repair index: create: %w", err)
	}
	onDisk, err := r.packFiles()
	if err != nil {
		idx.Close()
		return nil, err
	}
	rep = &RepairReport{}
	ids := make([]ID, 0, len(onDisk))
	for id := range onDisk {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	for _, id := range ids {
		if ctx.Err() != nil {
			idx.Close()
			return nil, ctx.Err()
		}
		blobs, size, err := r.readPackTrailer(id)
		if err != nil {
			rep.DamagedPacks = append(rep.DamagedPacks, fmt.Sprintf("%s: %v", id, err))
			continue
		}
		if err := idx.AddPack(ctx, id, size, blobs); err != nil {
			idx.Close()
			return nil, fmt.Errorf("repair index: add pack %s: %w", id.Short(), err)
		}
		rep.Packs++
		rep.Blobs += len(blobs)
	}
	// The repository id goes in last: an index without it is refused on
	// open, so an interrupted repair is never mistaken for a complete one.
	if err := idx.SetMeta(ctx, "repository_id", []byte(r.cfg.RepositoryID)); err != nil {
		idx.Close()
		return nil, fmt.Errorf("repair index: %w", err)
	}
	r.idx = idx
	r.badPacks = map[ID]string{}
	r.mu.Lock()
	r.treeCache = nil
	r.mu.Unlock()
	list, err := r.Snapshots(ctx)
	if err == nil {
		rep.Snapshots = len(list)
	}
	return rep, nil
}
