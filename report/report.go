// Package report writes a run directory: the configuration, the per-round metrics as CSV, a PNG
// plot of accuracy, loss (and ε when privacy accounting is on) per round, the final model, and
// the JSON summary. It depends on fl only (and gonum/plot).
package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Series is one metric per round for the plot.
type Series struct {
	Title  string
	YLabel string
	Points []Point
}

// Point is one (round, value) pair.
type Point struct {
	Round int
	Value float64
}

// WriteJSON writes v as indented JSON to dir/name.
func WriteJSON(dir, name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	return writeFile(filepath.Join(dir, name), append(b, '\n'))
}

// WriteCSV writes a header and rows to dir/name.
func WriteCSV(dir, name string, header []string, rows [][]string) error {
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	w := csv.NewWriter(f)
	_ = w.Write(header)
	_ = w.WriteAll(rows)
	if err := w.Error(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// F formats a float for CSV output.
func F(v float64) string { return strconv.FormatFloat(v, 'g', 8, 64) }

// WritePlot draws each series in its own panel, stacked, to dir/name as a PNG.
func WritePlot(dir, name, title string, series []Series) error {
	if len(series) == 0 {
		return nil
	}
	const width, panel = 7 * vg.Inch, 2.6 * vg.Inch
	img := vgimg.New(width, panel*vg.Length(len(series)))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(series), Cols: 1, PadY: vg.Millimeter * 2, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2,
		PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4}
	colors := []color.RGBA{{31, 119, 180, 255}, {214, 39, 40, 255}, {44, 160, 44, 255}, {148, 103, 189, 255}}
	for i, s := range series {
		p := plot.New()
		p.Title.Text = s.Title
		if i == 0 && title != "" {
			p.Title.Text = title + " — " + s.Title
		}
		p.X.Label.Text = "round"
		p.Y.Label.Text = s.YLabel
		p.Add(plotter.NewGrid())
		xys := make(plotter.XYs, len(s.Points))
		for k, pt := range s.Points {
			xys[k] = plotter.XY{X: float64(pt.Round), Y: pt.Value}
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			return fmt.Errorf("plot %s: %w", s.Title, err)
		}
		line.Color = colors[i%len(colors)]
		line.Width = vg.Points(1.5)
		p.Add(line)
		p.Draw(draw.Crop(tiles.At(dc, 0, i), 0, 0, 0, 0))
	}
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// writeFile writes through a temporary file and a rename, so a crash never leaves half a file.
func writeFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ByteSize formats a byte count in the binary unit that fits (B, KiB, MiB, GiB).
func ByteSize(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
