package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Report is the outcome of a run: one row per phase, one column per tool.
// The text table and the JSON file are two renderings of it.
type Report struct {
	Dataset Dataset    `json:"dataset"`
	Runs    int        `json:"runs"`
	Tools   []ToolInfo `json:"tools"` // column order
	Rows    []Row      `json:"rows"`
	// ReadLimit is --read-bps in bytes a second, 0 when reads ran at the disk's (and host cache's) speed.
	ReadLimit int64    `json:"read_limit_bytes_per_s,omitempty"`
	Notes     []string `json:"notes,omitempty"`
	Errors    []string `json:"errors,omitempty"`
}

// Dataset describes the pristine data the run started from.
type Dataset struct {
	Dir        string  `json:"dir"`
	Scale      float64 `json:"scale"`
	FilesScale float64 `json:"files_scale"`
	Seed       uint64  `json:"seed"`
	Files      int     `json:"files"`
	Bytes      int64   `json:"bytes"`
	Tree       string  `json:"tree_hash"`
}

// ToolInfo is one column.
type ToolInfo struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	Settings  string `json:"settings"`
	Snapforge bool   `json:"snapforge"` // a snapforge variant, compared with the peers
}

// Row is one phase. A tool without a value (the phase failed) is absent
// from Median and from the ratios.
type Row struct {
	Phase   string               `json:"phase"`
	Unit    string               `json:"unit"` // "s", or "MB" (10^6 bytes)
	Median  map[string]float64   `json:"median"`
	Samples map[string][]float64 `json:"samples"`
	Raw     *Raw                 `json:"raw,omitempty"`
	// Ratios are snapforge variant / peer, / "fastest" (the peer with the
	// lowest median) and / "raw"; lower is better everywhere.
	Ratios map[string]float64 `json:"ratios,omitempty"`
}

// Raw is the hardware baseline a phase is judged against.
type Raw struct {
	Label   string    `json:"label"`
	Median  float64   `json:"median"`
	Samples []float64 `json:"samples"`
}

// median returns the median of xs, which must not be empty.
func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// split returns the snapforge variants and the peers, in column order.
func (r *Report) split() (sf, peers []string) {
	for _, t := range r.Tools {
		if t.Snapforge {
			sf = append(sf, t.Name)
		} else {
			peers = append(peers, t.Name)
		}
	}
	return sf, peers
}

// ComputeRatios fills every row's Ratios from the medians.
func (r *Report) ComputeRatios() {
	sfs, peers := r.split()
	for i := range r.Rows {
		row := &r.Rows[i]
		row.Ratios = nil
		put := func(k string, num, den float64) {
			if den > 0 {
				if row.Ratios == nil {
					row.Ratios = map[string]float64{}
				}
				row.Ratios[k] = num / den
			}
		}
		fastest := math.Inf(1)
		for _, p := range peers {
			if v, ok := row.Median[p]; ok {
				fastest = min(fastest, v)
			}
		}
		for _, s := range sfs {
			v, ok := row.Median[s]
			if !ok {
				continue
			}
			for _, p := range peers {
				if pv, ok := row.Median[p]; ok {
					put(s+"/"+p, v, pv)
				}
			}
			if !math.IsInf(fastest, 1) {
				put(s+"/fastest", v, fastest)
			}
			if row.Raw != nil {
				put(s+"/raw", v, row.Raw.Median)
			}
		}
	}
}

// ratioColumns are the ratios the text table shows: the first snapforge
// variant against each peer, every variant against the fastest peer, and the
// first variant against the raw baseline. The JSON has all of them.
func (r *Report) ratioColumns() []string {
	sfs, peers := r.split()
	if len(sfs) == 0 {
		return nil
	}
	var cols []string
	for _, p := range peers {
		cols = append(cols, sfs[0]+"/"+p)
	}
	if len(peers) > 0 {
		for _, s := range sfs {
			cols = append(cols, s+"/fastest")
		}
	}
	return append(cols, sfs[0]+"/raw")
}

// short abbreviates snapforge to sf in ratio headers.
func short(s string) string { return strings.ReplaceAll(s, "snapforge", "sf") }

// Render writes the report as a Markdown table of medians and ratios,
// followed by the tools, notes and errors.
func (r *Report) Render(w io.Writer) error {
	ratios := r.ratioColumns()
	header := []string{"phase"}
	for _, t := range r.Tools {
		header = append(header, t.Name)
	}
	header = append(header, "raw")
	for _, c := range ratios {
		header = append(header, short(c))
	}
	table := [][]string{header}
	for _, row := range r.Rows {
		line := []string{fmt.Sprintf("%s (%s)", row.Phase, row.Unit)}
		for _, t := range r.Tools {
			v, ok := row.Median[t.Name]
			if len(row.Median) == 0 { // a baseline-only row
				line = append(line, "")
				continue
			}
			line = append(line, formatValue(v, ok))
		}
		if row.Raw != nil {
			line = append(line, formatValue(row.Raw.Median, true)+" "+row.Raw.Label)
		} else {
			line = append(line, "")
		}
		for _, c := range ratios {
			v, ok := row.Ratios[c]
			cell := ""
			if ok {
				cell = fmt.Sprintf("%.2f", v)
			}
			line = append(line, cell)
		}
		table = append(table, line)
	}
	var b strings.Builder
	writeMarkdown(&b, table)
	fmt.Fprintf(&b, "\nmedians of %d run(s); lower is better everywhere; sf = snapforge, fastest = the peer with the lowest median in that row; MB = 10^6 bytes\n", r.Runs)
	d := r.Dataset
	params := fmt.Sprintf("scale %g, files-scale %g, seed %d", d.Scale, d.FilesScale, d.Seed)
	if d.Scale == 0 {
		params = "an existing dataset of unknown scale"
	}
	fmt.Fprintf(&b, "dataset: %s (%s): %d files, %s, tree %s\n", d.Dir, params, d.Files, mb(d.Bytes), d.Tree)
	for _, t := range r.Tools {
		fmt.Fprintf(&b, "- %s: %s; %s\n", t.Name, t.Version, t.Settings)
	}
	return writeNotes(w, &b, r.Notes, r.Errors)
}

// writeNotes ends a report in b with its notes and errors, one a line,
// and writes it all to w.
func writeNotes(w io.Writer, b *strings.Builder, notes, errs []string) error {
	for _, n := range notes {
		fmt.Fprintf(b, "note: %s\n", n)
	}
	for _, e := range errs {
		fmt.Fprintf(b, "ERROR: %s\n", e)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// formatValue prints seconds and megabytes with two significant decimals
// below 10, one below 100, none above.
func formatValue(v float64, ok bool) string {
	switch {
	case !ok:
		return "–"
	case math.Abs(v) < 10:
		return fmt.Sprintf("%.2f", v)
	case math.Abs(v) < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// writeMarkdown pads a table's cells to aligned columns: the first left,
// the others right.
func writeMarkdown(b *strings.Builder, rows [][]string) {
	width := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], len([]rune(c)), 3)
		}
	}
	line := func(row []string) {
		b.WriteString("|")
		for i, c := range row {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i == 0 {
				b.WriteString(" " + c + pad + " |")
			} else {
				b.WriteString(" " + pad + c + " |")
			}
		}
		b.WriteString("\n")
	}
	line(rows[0])
	b.WriteString("|")
	for i, w := range width {
		if i == 0 {
			b.WriteString(" " + strings.Repeat("-", w) + " |")
		} else {
			b.WriteString(" " + strings.Repeat("-", w-1) + ": |")
		}
	}
	b.WriteString("\n")
	for _, row := range rows[1:] {
		line(row)
	}
}

// writeJSON writes a report, ratios and targets included, to path.
func writeJSON(path string, rep any) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// emitReport ends every benchmark command the same way: the rendered
// table, the JSON copy when asked for, and the errors listed under the
// table as the command's own error.
func emitReport(render func() error, rep any, jsonPath string, errs int, work string) error {
	if err := render(); err != nil {
		return err
	}
	if jsonPath != "" {
		if err := writeJSON(jsonPath, rep); err != nil {
			return err
		}
	}
	if errs > 0 {
		return fmt.Errorf("%d error(s), listed under the table; command output is in %s", errs, filepath.Join(work, "logs"))
	}
	return nil
}
