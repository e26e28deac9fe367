package data

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzDecodeIDX checks that the IDX decoder never panics or over-allocates on arbitrary
// input, and that whatever it accepts is self-consistent and re-encodes to the same bytes.
// Seed corpus: testdata/fuzz/FuzzDecodeIDX. Run: go test ./data -fuzz FuzzDecodeIDX -fuzztime 30s
func FuzzDecodeIDX(f *testing.F) {
	f.Add(idxBytes([]int{2, 2}, []byte{1, 2, 3, 4}))
	f.Add(idxBytes([]int{3}, []byte{7, 8, 9}))
	f.Add(gzipBytes(f, idxBytes([]int{1, 2, 2}, []byte{0, 64, 128, 255})))
	f.Fuzz(func(t *testing.T, in []byte) {
		dims, values, err := DecodeIDX(bytes.NewReader(in))
		if err != nil {
			return
		}
		total := 1
		for _, d := range dims {
			total *= d
		}
		if len(values) != total {
			t.Fatalf("dims %v but %d values", dims, len(values))
		}
		if len(in) >= 2 && [2]byte(in[:2]) == gzipMagic {
			return
		}
		if again := idxBytes(dims, values); !bytes.Equal(again, in) {
			t.Fatalf("accepted %x but it re-encodes as %x", in, again)
		}
	})
}

// FuzzLoadCSV checks that the CSV loader never panics on arbitrary input and that every
// dataset it accepts is valid. Seed corpus: testdata/fuzz/FuzzLoadCSV.
// Run: go test ./data -fuzz FuzzLoadCSV -fuzztime 30s
func FuzzLoadCSV(f *testing.F) {
	f.Add("a,b,label\n1,2,x\n3,4,y\n", "label")
	f.Add("label,v\n10,1.5\n9,-2e3\n", "label")
	f.Add("a,label\n1,\"q\"\"uoted\"\n", "label")
	f.Fuzz(func(t *testing.T, in, label string) {
		d, err := LoadCSV(strings.NewReader(in), "fuzz", label)
		if err != nil {
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("accepted input gives an invalid dataset: %v", err)
		}
		if d.Len() == 0 || d.Classes > d.Len() || len(d.ClassNames) != d.Classes {
			t.Fatalf("%d examples, %d classes, %d class names", d.Len(), d.Classes, len(d.ClassNames))
		}
	})
}
