package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
)

func init() {
	register(command{words: "version", summary: "print the module version, commit, Go version and build settings", run: runVersion})
	examples["version"] = []string{"shoal version", "shoal version | grep vcs.revision"}
}

func runVersion(_ context.Context, args []string, stdout, _ io.Writer) error {
	if err := parseArgs(flag.NewFlagSet("shoal version", flag.ContinueOnError), args); err != nil {
		return err
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return errors.New("version: this binary carries no build information")
	}
	fmt.Fprint(stdout, formatVersion(info))
	return nil
}

// formatVersion is the module's path and version, the VCS revision, time and state, the Go
// version, and every build setting (tags, flags, CGO, GOOS/GOARCH).
func formatVersion(info *debug.BuildInfo) string {
	s := fmt.Sprintf("shoal %s (module %s)\ngo %s\n", info.Main.Version, info.Main.Path, info.GoVersion)
	for _, b := range info.Settings {
		s += fmt.Sprintf("%s=%s\n", b.Key, b.Value)
	}
	return s
}
