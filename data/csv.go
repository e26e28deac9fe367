package data

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// LoadCSV reads a CSV with a header row; labelColumn names the label column (its values are
// class names or integers, mapped to 0..Classes-1 in sorted order: numerically when every label
// is an integer, else as strings; ClassNames records the mapping). All other columns must be
// numeric and finite. Errors name the line and column of malformed input (ragged rows,
// non-numeric or non-finite values, empty cells, missing label column, empty file).
func LoadCSV(r io.Reader, name, labelColumn string) (*Dataset, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // checked below, with a clearer message
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%s: empty file: want a header row naming the columns", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: header: %w", name, err)
	}
	header = slices.Clone(header)
	header[0] = strings.TrimPrefix(header[0], "\ufeff") // byte-order mark written by spreadsheets
	labelAt := -1
	for i, h := range header {
		h = strings.TrimSpace(h)
		if h == labelColumn {
			if labelAt >= 0 {
				return nil, fmt.Errorf("%s: line 1: label column %q appears twice (columns %d and %d)", name, labelColumn, labelAt+1, i+1)
			}
			labelAt = i
		}
	}
	if labelAt < 0 {
		return nil, fmt.Errorf("%s: line 1: no label column %q among the columns %q", name, labelColumn, header)
	}
	dim := len(header) - 1
	if dim < 1 {
		return nil, fmt.Errorf("%s: line 1: only the label column %q, want at least one feature column", name, labelColumn)
	}
	var x []float32
	var labelIDs []int32          // per row: index into distinct, in order of first appearance
	var distinct []string         // distinct label values
	ids := make(map[string]int32) // label value → index into distinct
	for {
		record, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var perr *csv.ParseError
			if errors.As(err, &perr) {
				return nil, fmt.Errorf("%s: line %d, character %d: %w", name, perr.Line, perr.Column, perr.Err)
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		line, _ := cr.FieldPos(0)
		if len(record) != len(header) {
			return nil, fmt.Errorf("%s: line %d: %d fields, the header has %d", name, line, len(record), len(header))
		}
		for i, field := range record {
			field = strings.TrimSpace(field)
			if i == labelAt {
				if field == "" {
					return nil, fmt.Errorf("%s: line %d, column %d (%s): empty label", name, line, i+1, header[i])
				}
				id, ok := ids[field]
				if !ok {
					// Cloned: the field shares memory with the whole line, which must not stay alive.
					id = int32(len(distinct))
					distinct = append(distinct, strings.Clone(field))
					ids[distinct[id]] = id
				}
				labelIDs = append(labelIDs, id)
				continue
			}
			v, err := strconv.ParseFloat(field, 32)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("%s: line %d, column %d (%s): value %q is not a finite number", name, line, i+1, header[i], field)
			}
			x = append(x, float32(v))
		}
	}
	if len(labelIDs) == 0 {
		return nil, fmt.Errorf("%s: no data rows after the header", name)
	}
	classNames, classOf := labelClasses(distinct)
	y := make([]int32, len(labelIDs))
	for i, id := range labelIDs {
		y[i] = classOf[id]
	}
	return &Dataset{
		Name: name, X: x, Y: y,
		Dim: dim, C: 1, H: 1, W: dim,
		Classes: len(classNames), ClassNames: classNames,
	}, nil
}

// labelClasses numbers the distinct label values in sorted order: numerically when all are
// integers (so "10" comes after "9", and "9" and "09" are one class), else as strings. It returns
// the class names and, for each distinct value, its class.
func labelClasses(distinct []string) (names []string, classOf []int32) {
	classOf = make([]int32, len(distinct))
	values := make([]int64, len(distinct))
	numeric := true
	for i, l := range distinct {
		v, err := strconv.ParseInt(l, 10, 64)
		if err != nil {
			numeric = false
			break
		}
		values[i] = v
	}
	if numeric {
		sorted := slices.Clone(values)
		slices.Sort(sorted)
		sorted = slices.Compact(sorted)
		for _, v := range sorted {
			names = append(names, strconv.FormatInt(v, 10))
		}
		for i, v := range values {
			class, _ := slices.BinarySearch(sorted, v)
			classOf[i] = int32(class)
		}
		return names, classOf
	}
	names = slices.Clone(distinct)
	slices.Sort(names)
	for i, l := range distinct {
		class, _ := slices.BinarySearch(names, l)
		classOf[i] = int32(class)
	}
	return names, classOf
}

// LoadCSVFile reads the CSV file at path with LoadCSV, naming the dataset after the file.
func LoadCSVFile(path, labelColumn string) (*Dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load CSV: %w", err)
	}
	defer f.Close()
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	d, err := LoadCSV(f, name, labelColumn)
	if err != nil {
		return nil, fmt.Errorf("load CSV %s: %w", path, err)
	}
	return d, nil
}
