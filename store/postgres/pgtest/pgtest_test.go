package pgtest

import (
	"strings"
	"testing"
)

// Without the server binaries the helper fails and says what to install; it never lets a
// test skip.
func TestMissingBinariesNamePackage(t *testing.T) {
	debianBinDirs = t.TempDir() + "/none/*/bin"
	defer func() { debianBinDirs = "/usr/lib/postgresql/*/bin" }()
	t.Setenv("PATH", t.TempDir())
	for _, env := range []string{"", t.TempDir()} {
		t.Setenv(EnvBinDir, env)
		_, err := StartCluster()
		if err == nil || !strings.Contains(err.Error(), "apt-get install -y postgresql") {
			t.Fatalf("%s=%q: %v", EnvBinDir, env, err)
		}
	}
}
