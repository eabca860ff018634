package main

import (
	"errors"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// plotMax draws p50 (dashed) and p99 (solid; the median of the rounds' p99s
// when steps ran in rounds, the figure they were judged by) latency against
// offered load for each path, on a log latency axis, with the p99 bound as a
// line. A ladder without a measured step (none run, or none answered) has
// nothing to draw on log axes, which gonum would panic on: that is
// errNoPlotPoints, and no file is written.
func plotMax(m *MaxResult, file string) error {
	if !hasPlotPoint(m) {
		return errNoPlotPoints
	}
	p := plot.New()
	p.Title.Text = "Non-streaming chat: latency against offered load"
	p.X.Label.Text = "offered load (requests/s, log scale)"
	// The steps grow geometrically: a log axis spaces them evenly.
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = ticks125{}
	p.Y.Label.Text = "latency (µs, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = ticks125{}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())

	var order []string
	series := map[string][2]plotter.XYs{}
	minX, maxX, maxY := 0.0, 0.0, m.BoundUS
	for _, s := range m.Steps {
		if _, ok := series[s.Path]; !ok {
			order = append(order, s.Path)
		}
		xy := series[s.Path]
		p99 := s.Latency.judgedP99()
		if plotPoint(s) {
			xy[0] = append(xy[0], plotter.XY{X: s.Offered, Y: max(s.Latency.P50, 0.1)})
			xy[1] = append(xy[1], plotter.XY{X: s.Offered, Y: max(p99, 0.1)})
		}
		series[s.Path] = xy
		if s.Offered > 0 && (minX == 0 || s.Offered < minX) {
			minX = s.Offered
		}
		maxX = max(maxX, s.Offered)
		maxY = max(maxY, p99)
	}
	// A decade of headroom above the highest point keeps the legend, in
	// the top-left corner, clear of the lines.
	p.Y.Max = maxY * 10
	for i, name := range order {
		xy := series[name]
		p99Label := " p99"
		if m.Rounds > 0 {
			p99Label = " p99 (median of rounds)"
		}
		for q, label := range []string{" p50", p99Label} {
			if len(xy[q]) == 0 {
				continue
			}
			l, pts, err := plotter.NewLinePoints(xy[q])
			if err != nil {
				return err
			}
			c := plotutil.Color(i)
			l.Color, pts.Color = c, c
			pts.Shape = draw.CircleGlyph{}
			pts.Radius = vg.Points(2)
			if q == 0 {
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			}
			p.Add(l, pts)
			p.Legend.Add(name+label, l)
		}
	}
	if maxX > 0 && m.BoundUS > 0 {
		bound, err := plotter.NewLine(plotter.XYs{{X: minX, Y: m.BoundUS}, {X: maxX, Y: m.BoundUS}})
		if err != nil {
			return err
		}
		bound.Color = color.RGBA{R: 200, A: 255}
		bound.Dashes = []vg.Length{vg.Points(1), vg.Points(2)}
		p.Add(bound)
		p.Legend.Add("p99 bound", bound)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	return p.Save(9*vg.Inch, 5.5*vg.Inch, file)
}

// errNoPlotPoints is plotMax's answer to a ladder without a step to draw.
var errNoPlotPoints = errors.New("no max step has a latency to plot")

// plotPoint reports whether step s has a point on the log-log plot.
func plotPoint(s MaxStep) bool { return s.Latency.Count > 0 && s.Offered > 0 }

func hasPlotPoint(m *MaxResult) bool {
	for _, s := range m.Steps {
		if plotPoint(s) {
			return true
		}
	}
	return false
}

// ticks125 marks a log axis at 1, 2 and 5 times each power of ten (minor
// ticks at the other digits): a decade or two of load or latency then
// still gets several labels.
type ticks125 struct{}

// Ticks implements plot.Ticker.
func (ticks125) Ticks(lo, hi float64) []plot.Tick {
	if lo <= 0 || hi <= lo {
		return nil
	}
	var out []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		base := math.Pow(10, e)
		for d := 1; d <= 9; d++ {
			v := float64(d) * base
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if d == 1 || d == 2 || d == 5 {
				t.Label = strconv.FormatFloat(v, 'f', -1, 64)
			}
			out = append(out, t)
		}
	}
	return out
}
