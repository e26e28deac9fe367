package data

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLoadCSV(t *testing.T) {
	in := "sepal, petal ,species,width\n" +
		"5.1,1.4,setosa,0.2\n" +
		"7.0,4.7,versicolor,1.4\n" +
		"\"6.3\",6.0,virginica,-2.5e0\n" +
		"4.9, 1.4 ,setosa,0.2\n"
	d, err := LoadCSV(strings.NewReader(in), "iris", "species")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if d.Len() != 4 || d.Dim != 3 || d.C != 1 || d.H != 1 || d.W != 3 || d.Classes != 3 {
		t.Fatalf("got %d examples of dimension %d (%d×%d×%d), %d classes", d.Len(), d.Dim, d.C, d.H, d.W, d.Classes)
	}
	wantX := []float32{5.1, 1.4, 0.2, 7.0, 4.7, 1.4, 6.3, 6.0, -2.5, 4.9, 1.4, 0.2}
	if !slices.Equal(d.X, wantX) {
		t.Errorf("X = %v, want %v", d.X, wantX)
	}
	if want := []int32{0, 1, 2, 0}; !slices.Equal(d.Y, want) {
		t.Errorf("Y = %v, want %v", d.Y, want)
	}
	if want := []string{"setosa", "versicolor", "virginica"}; !slices.Equal(d.ClassNames, want) {
		t.Errorf("ClassNames = %v, want %v", d.ClassNames, want)
	}
}

func TestLoadCSVIntegerLabelsSortNumerically(t *testing.T) {
	in := "\ufeffy,a\n10,1\n9,2\n-1,3\n09,4\n"
	d, err := LoadCSV(strings.NewReader(in), "ints", "y")
	if err != nil {
		t.Fatal(err)
	}
	// -1 < 9 = 09 < 10: string order would put "10" before "9".
	if want := []int32{2, 1, 0, 1}; !slices.Equal(d.Y, want) {
		t.Errorf("Y = %v, want %v", d.Y, want)
	}
	if want := []string{"-1", "9", "10"}; !slices.Equal(d.ClassNames, want) {
		t.Errorf("ClassNames = %v, want %v", d.ClassNames, want)
	}
}

func TestLoadCSVErrors(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"empty", "", "empty file"},
		{"header only", "a,label\n", "no data rows"},
		{"no label column", "a,b\n1,2\n", `no label column "label"`},
		{"only label", "label\nx\n", "at least one feature column"},
		{"duplicate label", "label,a,label\n1,2,3\n", "appears twice"},
		{"ragged", "a,label\n1,x\n2,y,3\n", "line 3: 3 fields, the header has 2"},
		{"non-numeric", "a,b,label\n1,2,x\n3,abc,y\n", `line 3, column 2 (b): value "abc" is not a finite number`},
		{"nan", "a,label\n1,x\nNaN,y\n", `line 3, column 1 (a): value "NaN"`},
		{"inf", "a,label\n+Inf,x\n", `line 2, column 1 (a): value "+Inf"`},
		{"overflow float32", "a,label\n1e39,x\n", `value "1e39"`},
		{"empty value", "a,label\n,x\n", `line 2, column 1 (a): value ""`},
		{"empty label", "a,label\n1,\n", "line 2, column 2 (label): empty label"},
		{"bad quote", "a,label\n1,\"x\n", "line 2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadCSV(strings.NewReader(c.in), "t", "label")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("LoadCSV error = %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestLoadCSVFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "points.csv")
	if err := os.WriteFile(path, []byte("x,y,class\n0,0,a\n1,1,b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := LoadCSVFile(path, "class")
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "points" || d.Len() != 2 || d.Classes != 2 {
		t.Errorf("got %q with %d examples, %d classes", d.Name, d.Len(), d.Classes)
	}
	if _, err := LoadCSVFile(filepath.Join(t.TempDir(), "missing.csv"), "class"); err == nil ||
		!strings.Contains(err.Error(), "missing.csv") {
		t.Errorf("missing file: error %v, want one naming the file", err)
	}
}
