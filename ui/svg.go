package ui

import (
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
)

// palette is the colours of the series (colour-blind safe, Okabe–Ito).
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"}

// Series is one line of a chart.
type Series struct {
	Name   string
	X, Y   []float64
	Dashed bool
	// Color indexes the palette (default: the series' position), so that a run keeps its
	// colour in every chart of a comparison.
	Color *int
}

func (s Series) color(i int) string {
	if s.Color != nil {
		i = *s.Color
	}
	return palette[i%len(palette)]
}

// Chart is a line chart over rounds, drawn as SVG by the server.
type Chart struct {
	ID, Title, YLabel string
	Series            []Series
	// Limit, if set, is drawn as a horizontal rule (the privacy budget).
	Limit      float64
	LimitLabel string
	YFrom0     bool
	Format     func(float64) string // tick labels (default %g)
}

// chart geometry, in viewBox units: the SVG scales to its container.
const (
	cw, ch                     = 640.0, 260.0
	padL, padR, padT, padB     = 62.0, 16.0, 34.0, 36.0
	plotW, plotH               = cw - padL - padR, ch - padT - padB
	maxMarkers                 = 40
	legendRow, legendCharWidth = 14.0, 6.6
)

// SVG renders the chart.
func (c Chart) SVG() template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" id="%s" viewBox="0 0 %g %g" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`,
		template.HTMLEscapeString(c.ID), cw, ch, template.HTMLEscapeString(c.Title))
	fmt.Fprintf(&b, `<text class="title" x="%g" y="18">%s</text>`, padL, template.HTMLEscapeString(c.Title))
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for i := range s.X {
			if isFinite(s.Y[i]) {
				xmin, xmax = math.Min(xmin, s.X[i]), math.Max(xmax, s.X[i])
				ymin, ymax = math.Min(ymin, s.Y[i]), math.Max(ymax, s.Y[i])
			}
		}
	}
	if c.Limit > 0 {
		ymin, ymax = math.Min(ymin, c.Limit), math.Max(ymax, c.Limit)
	}
	if math.IsInf(xmin, 1) {
		fmt.Fprintf(&b, `<text class="empty" x="%g" y="%g">no rounds yet</text></svg>`, cw/2, ch/2)
		return template.HTML(b.String())
	}
	if c.YFrom0 && ymin > 0 {
		ymin = 0
	}
	if xmax == xmin {
		xmin, xmax = xmin-1, xmax+1
	}
	if ymax == ymin {
		ymin, ymax = ymin-math.Max(1, math.Abs(ymin))*0.05, ymax+math.Max(1, math.Abs(ymax))*0.05
	}
	yt := niceTicks(ymin, ymax, 5)
	ymin, ymax = math.Min(ymin, yt[0]), math.Max(ymax, yt[len(yt)-1])
	px := func(x float64) float64 { return padL + (x-xmin)/(xmax-xmin)*plotW }
	py := func(y float64) float64 { return padT + plotH - (y-ymin)/(ymax-ymin)*plotH }
	format := c.Format
	if format == nil {
		format = func(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }
	}
	for _, t := range yt {
		fmt.Fprintf(&b, `<line class="grid" x1="%g" x2="%g" y1="%.1f" y2="%.1f"/><text class="tick" x="%g" y="%.1f" text-anchor="end">%s</text>`,
			padL, padL+plotW, py(t), py(t), padL-6, py(t)+4, format(t))
	}
	for _, t := range niceTicks(xmin, xmax, 8) {
		if t != math.Trunc(t) || t < xmin || t > xmax {
			continue
		}
		fmt.Fprintf(&b, `<text class="tick" x="%.1f" y="%g" text-anchor="middle">%g</text>`, px(t), padT+plotH+16, t)
	}
	fmt.Fprintf(&b, `<text class="axis" x="%g" y="%g" text-anchor="middle">round</text>`, padL+plotW/2, ch-4)
	fmt.Fprintf(&b, `<text class="axis" transform="translate(14 %g) rotate(-90)" text-anchor="middle">%s</text>`, padT+plotH/2, template.HTMLEscapeString(c.YLabel))
	fmt.Fprintf(&b, `<rect class="frame" x="%g" y="%g" width="%g" height="%g"/>`, padL, padT, plotW, plotH)
	if c.Limit > 0 {
		fmt.Fprintf(&b, `<line class="limit" x1="%g" x2="%g" y1="%.1f" y2="%.1f"/><text class="limit-label" x="%g" y="%.1f" text-anchor="end">%s</text>`,
			padL, padL+plotW, py(c.Limit), py(c.Limit), padL+plotW-4, py(c.Limit)-4, template.HTMLEscapeString(c.LimitLabel))
	}
	for i, s := range c.Series {
		color := s.color(i)
		var pts []string
		for k := range s.X {
			if isFinite(s.Y[k]) {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(s.X[k]), py(s.Y[k])))
			}
		}
		dash := ""
		if s.Dashed {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(&b, `<polyline class="line" fill="none" stroke="%s" stroke-width="2"%s points="%s"><title>%s</title></polyline>`,
			color, dash, strings.Join(pts, " "), template.HTMLEscapeString(s.Name))
		if len(s.X) <= maxMarkers {
			for k := range s.X {
				if isFinite(s.Y[k]) {
					fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s, round %g: %s</title></circle>`,
						px(s.X[k]), py(s.Y[k]), color, template.HTMLEscapeString(s.Name), s.X[k], strconv.FormatFloat(s.Y[k], 'g', 6, 64))
				}
			}
		}
	}
	var colors []string
	for i, s := range c.Series {
		colors = append(colors, s.color(i))
	}
	legend(&b, names(c.Series), colors)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func names(ss []Series) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.Name
	}
	return out
}

// legend writes the series names right-aligned above the plot, in their colours.
func legend(b *strings.Builder, names, colors []string) {
	if len(names) < 2 {
		return
	}
	x := cw - padR
	for i := len(names) - 1; i >= 0; i-- {
		w := float64(len([]rune(names[i])))*legendCharWidth + 18
		x -= w
		fmt.Fprintf(b, `<rect x="%.1f" y="11" width="10" height="10" fill="%s"/><text class="legend" x="%.1f" y="20">%s</text>`,
			x, colors[i], x+14, template.HTMLEscapeString(names[i]))
	}
}

// StackChart is a stacked bar chart over rounds (the round's time split by stage).
type StackChart struct {
	ID, Title, YLabel string
	Rounds            []int
	Parts             []string    // stack order
	Values            [][]float64 // Values[round index][part index]
}

// SVG renders the stacked bars.
func (c StackChart) SVG() template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" id="%s" viewBox="0 0 %g %g" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`,
		template.HTMLEscapeString(c.ID), cw, ch, template.HTMLEscapeString(c.Title))
	fmt.Fprintf(&b, `<text class="title" x="%g" y="18">%s</text>`, padL, template.HTMLEscapeString(c.Title))
	ymax := 0.0
	for _, vs := range c.Values {
		s := 0.0
		for _, v := range vs {
			s += v
		}
		ymax = math.Max(ymax, s)
	}
	if len(c.Rounds) == 0 || ymax == 0 {
		fmt.Fprintf(&b, `<text class="empty" x="%g" y="%g">no stage times yet</text></svg>`, cw/2, ch/2)
		return template.HTML(b.String())
	}
	yt := niceTicks(0, ymax, 5)
	ymax = math.Max(ymax, yt[len(yt)-1])
	py := func(y float64) float64 { return padT + plotH - y/ymax*plotH }
	for _, t := range yt {
		fmt.Fprintf(&b, `<line class="grid" x1="%g" x2="%g" y1="%.1f" y2="%.1f"/><text class="tick" x="%g" y="%.1f" text-anchor="end">%s</text>`,
			padL, padL+plotW, py(t), py(t), padL-6, py(t)+4, strconv.FormatFloat(t, 'g', 4, 64))
	}
	slot := plotW / float64(len(c.Rounds))
	bw := math.Max(1, slot*0.8)
	every := int(math.Ceil(float64(len(c.Rounds)) / 10))
	for i, r := range c.Rounds {
		x := padL + float64(i)*slot + (slot-bw)/2
		y := 0.0
		for k, v := range c.Values[i] {
			if v <= 0 {
				continue
			}
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.2f" fill="%s"><title>round %d, %s: %.4g s</title></rect>`,
				x, py(y+v), bw, py(y)-py(y+v), palette[k%len(palette)], r, template.HTMLEscapeString(c.Parts[k]), v)
			y += v
		}
		if i%every == 0 {
			fmt.Fprintf(&b, `<text class="tick" x="%.1f" y="%g" text-anchor="middle">%d</text>`, x+bw/2, padT+plotH+16, r)
		}
	}
	fmt.Fprintf(&b, `<text class="axis" x="%g" y="%g" text-anchor="middle">round</text>`, padL+plotW/2, ch-4)
	fmt.Fprintf(&b, `<text class="axis" transform="translate(14 %g) rotate(-90)" text-anchor="middle">%s</text>`, padT+plotH/2, template.HTMLEscapeString(c.YLabel))
	fmt.Fprintf(&b, `<rect class="frame" x="%g" y="%g" width="%g" height="%g"/>`, padL, padT, plotW, plotH)
	var colors []string
	for i := range c.Parts {
		colors = append(colors, palette[i%len(palette)])
	}
	legend(&b, c.Parts, colors)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// niceTicks returns about n round tick values covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	span := hi - lo
	if span <= 0 || !isFinite(span) {
		return []float64{lo}
	}
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	for t := math.Floor(lo/step) * step; t <= hi+step*1e-9; t += step {
		out = append(out, math.Round(t/step)*step)
	}
	if out[len(out)-1] < hi {
		out = append(out, out[len(out)-1]+step)
	}
	return out
}
