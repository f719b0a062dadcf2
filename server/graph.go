package server

import (
	"fmt"
	"sort"
)

// The dependency graph is laid out on the server and drawn as inline SVG: no script, no library,
// and the page's policy (pagePolicy) needs nothing more than its stylesheet for it.
const (
	// graphNodeWidth and graphNodeHeight are the size of an app's box, in SVG units.
	graphNodeWidth  = 168
	graphNodeHeight = 34
	// graphColumnGap is the room between two layers, where the edges run.
	graphColumnGap = 56
	// graphRowGap is the room between two boxes of one layer.
	graphRowGap = 14
	// graphMargin surrounds the drawing.
	graphMargin = 8
	// graphLabelRunes is how much of an app's name fits in its box; the full name is in its title.
	graphLabelRunes = 20
	// graphOrderSweeps bounds the passes that reorder each layer to shorten crossing edges.
	graphOrderSweeps = 4
)

// graphNode is one app placed in the drawing.
type graphNode struct {
	Name  string
	Label string // Name, cut to fit the box
	State string // last sync's state, or "never"
	Layer int
	X, Y  int
	W, H  int
	// TextX and TextY place the label inside the box.
	TextX, TextY int
}

// graphEdge runs from an app to one that depends on it (dependency first, left to right).
type graphEdge struct {
	From, To string
	// Path is the SVG path data of the curve.
	Path string
}

// depGraph is the laid-out dependency graph of the apps.
type depGraph struct {
	Nodes         []graphNode
	Edges         []graphEdge
	Width, Height int
}

// layoutGraph places apps in layers, left to right: an app sits one layer right of the furthest
// of its dependencies, so every edge points right. Within a layer, apps are ordered by the mean
// position of their dependencies (then by name), a few sweeps, which keeps most edges short and
// uncrossed. Names in dependsOn that are not apps are ignored; config validation refuses cycles,
// and a cycle that slipped through still ends (layers are bounded by the number of apps).
func layoutGraph(apps []AppInfo, state func(app string) string) depGraph {
	known := map[string]bool{}
	for _, a := range apps {
		known[a.Name] = true
	}
	deps := map[string][]string{}
	for _, a := range apps {
		for _, d := range a.DependsOn {
			if known[d] && d != a.Name {
				deps[a.Name] = append(deps[a.Name], d)
			}
		}
	}
	layer := map[string]int{}
	// Longest path from the roots, by relaxation: at most len(apps) rounds settle an acyclic graph.
	for round := 0; round < len(apps); round++ {
		changed := false
		for _, a := range apps {
			l := 0
			for _, d := range deps[a.Name] {
				if layer[d]+1 > l {
					l = layer[d] + 1
				}
			}
			if l >= len(apps) {
				l = len(apps) - 1
			}
			if l != layer[a.Name] {
				layer[a.Name], changed = l, true
			}
		}
		if !changed {
			break
		}
	}
	layers := 0
	for _, a := range apps {
		if layer[a.Name]+1 > layers {
			layers = layer[a.Name] + 1
		}
	}
	columns := make([][]string, layers)
	for _, a := range apps {
		columns[layer[a.Name]] = append(columns[layer[a.Name]], a.Name)
	}
	for _, c := range columns {
		sort.Strings(c)
	}
	pos := map[string]float64{}
	place := func() {
		for _, c := range columns {
			for i, n := range c {
				pos[n] = float64(i)
			}
		}
	}
	place()
	for sweep := 0; sweep < graphOrderSweeps; sweep++ {
		for _, c := range columns[min(1, len(columns)):] {
			mean := map[string]float64{}
			for _, n := range c {
				if len(deps[n]) == 0 {
					mean[n] = pos[n]
					continue
				}
				var sum float64
				for _, d := range deps[n] {
					sum += pos[d]
				}
				mean[n] = sum / float64(len(deps[n]))
			}
			sort.SliceStable(c, func(i, j int) bool {
				if mean[c[i]] != mean[c[j]] {
					return mean[c[i]] < mean[c[j]]
				}
				return c[i] < c[j]
			})
			for i, n := range c {
				pos[n] = float64(i)
			}
		}
	}
	g := depGraph{}
	rows := 0
	at := map[string]graphNode{}
	for li, c := range columns {
		rows = max(rows, len(c))
		for i, n := range c {
			x := graphMargin + li*(graphNodeWidth+graphColumnGap)
			y := graphMargin + i*(graphNodeHeight+graphRowGap)
			node := graphNode{Name: n, Label: cutLabel(n), State: state(n), Layer: li, X: x, Y: y, W: graphNodeWidth, H: graphNodeHeight, TextX: x + 10, TextY: y + graphNodeHeight/2 + 5}
			at[n] = node
			g.Nodes = append(g.Nodes, node)
		}
	}
	for _, a := range apps {
		to := at[a.Name]
		for _, d := range deps[a.Name] {
			from := at[d]
			x1, y1 := from.X+graphNodeWidth, from.Y+graphNodeHeight/2
			x2, y2 := to.X, to.Y+graphNodeHeight/2
			mid := (x1 + x2) / 2
			g.Edges = append(g.Edges, graphEdge{From: d, To: a.Name, Path: fmt.Sprintf("M%d %d C%d %d, %d %d, %d %d", x1, y1, mid, y1, mid, y2, x2, y2)})
		}
	}
	if layers > 0 {
		g.Width = 2*graphMargin + layers*graphNodeWidth + (layers-1)*graphColumnGap
		g.Height = 2*graphMargin + rows*graphNodeHeight + (rows-1)*graphRowGap
	}
	return g
}

func cutLabel(s string) string {
	r := []rune(s)
	if len(r) <= graphLabelRunes {
		return s
	}
	return string(r[:graphLabelRunes-1]) + "…"
}
