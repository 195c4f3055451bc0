// Package render writes what the skiff CLI shows: tables aligned as
// kubectl aligns them, the same data as JSON or YAML, and the network as
// a Graphviz graph. It does no I/O of its own beyond its writer, so its
// output is tested byte for byte (golden files).
package render

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// Table is rows under headers, optionally under a title line.
type Table struct {
	Title   string
	Headers []string
	Rows    [][]string
	Empty   string // shown instead of the headers when there is no row
}

// Tables writes tables one after the other, a blank line between, each
// aligned on its own: upper-case headers, columns three spaces apart.
func Tables(w io.Writer, tables ...Table) error {
	for i, t := range tables {
		if i > 0 {
			if _, err := fmt.Fprintln(w); err != nil {
				return err
			}
		}
		if t.Title != "" {
			if _, err := fmt.Fprintln(w, t.Title); err != nil {
				return err
			}
		}
		if len(t.Rows) == 0 {
			empty := t.Empty
			if empty == "" {
				empty = "(none)"
			}
			if _, err := fmt.Fprintln(w, empty); err != nil {
				return err
			}
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
		fmt.Fprintln(tw, strings.ToUpper(strings.Join(t.Headers, "\t")))
		for _, r := range t.Rows {
			fmt.Fprintln(tw, strings.Join(r, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// Formats are the values of -o that every command takes.
var Formats = []string{"table", "json", "yaml"}

// CheckFormat says whether format is one of Formats or extra.
func CheckFormat(format string, extra ...string) error {
	all := append(slices.Clone(Formats), extra...)
	if !slices.Contains(all, format) {
		return fmt.Errorf("unknown output format %q: use %s", format, strings.Join(all, ", "))
	}
	return nil
}

// Data writes v as JSON (indented, as kubectl -o json) or YAML.
func Data(w io.Writer, format string, v any) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "    ")
		return enc.Encode(v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return fmt.Errorf("encoding YAML: %w", err)
		}
		_, err = w.Write(b)
		return err
	}
	return fmt.Errorf("unknown output format %q", format)
}

// Dot writes the network as an undirected Graphviz graph: a node per
// site (the local one bold), an edge per pair of linked sites labelled
// with the link's cost (the lower of the two directions' when they
// differ).
func Dot(w io.Writer, local string, sites []model.Site) error {
	var b strings.Builder
	b.WriteString("graph skiff {\n\tnode [shape=box];\n")
	names := make([]string, 0, len(sites))
	for _, s := range sites {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	for _, n := range names {
		attr := ""
		if n == local {
			attr = " [style=bold]"
		}
		fmt.Fprintf(&b, "\t%s%s;\n", strconv.Quote(n), attr)
	}
	type pair struct{ a, b string }
	cost := map[pair]int{}
	for _, s := range sites {
		for _, l := range s.Links {
			p := pair{s.Name, l.Peer}
			if p.b < p.a {
				p = pair{l.Peer, s.Name}
			}
			if c, ok := cost[p]; !ok || l.Cost < c {
				cost[p] = l.Cost
			}
		}
	}
	pairs := make([]pair, 0, len(cost))
	for p := range cost {
		pairs = append(pairs, p)
	}
	slices.SortFunc(pairs, func(x, y pair) int { return strings.Compare(x.a+"\x00"+x.b, y.a+"\x00"+y.b) })
	for _, p := range pairs {
		fmt.Fprintf(&b, "\t%s -- %s [label=\"%d\"];\n", strconv.Quote(p.a), strconv.Quote(p.b), cost[p])
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}
