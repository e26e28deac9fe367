// Command shoal is the one binary of Shoal: the federated-learning simulator, and the tools to
// plan, benchmark and run private federated training.
//
// Subcommands register themselves (see register) so that each lives in a file of its own:
// simulate, server, client, certs, privacy epsilon|noise and bench secagg|he. The command is wiring
// only: flag groups shared by simulate, server and client (options.go), the run plan both
// simulate and server build (build.go), and the deployment's network and run store (network.go,
// runstore.go); the logic lives in the packages it wires.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand: its words ("simulate", "bench secagg"), a one-line summary, and
// the function that runs it with the arguments after its words.
type command struct {
	words   string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

// register adds a subcommand; called from init functions of the files that implement them.
func register(c command) {
	if _, dup := commands[c.words]; dup {
		panic("shoal: command registered twice: " + c.words)
	}
	commands[c.words] = c
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches args to the longest matching subcommand and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for n := min(len(args), 2); n >= 1; n-- {
		words := strings.Join(args[:n], " ")
		c, ok := commands[words]
		if !ok {
			continue
		}
		err := c.run(ctx, args[n:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "shoal %s: %v\n", words, err)
			return 2
		default:
			fmt.Fprintf(stderr, "shoal %s: error: %v\n", words, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "shoal: unknown command %q\n\n", strings.Join(args, " "))
	usage(stderr)
	return 2
}

// errUsage marks errors in how the command was called (exit status 2).
var errUsage = errors.New("usage error")

func usageErrorf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "shoal — private federated learning\n\nUsage: shoal <command> [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for k := range commands {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(w, "  %-18s %s\n", k, commands[k].summary)
	}
	fmt.Fprintln(w, "\nRun 'shoal <command> -h' for the flags of a command.")
}
