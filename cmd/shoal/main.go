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
	"slices"
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
// Help (shoal help [command], -h) goes to stdout; errors go to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		usage(stderr)
		return 2
	case args[0] == "-h" || args[0] == "--help" || args[0] == "help" && len(args) == 1:
		usage(stdout)
		return 0
	case args[0] == "help":
		return run(ctx, append(slices.Clone(args[1:]), "-h"), stdout, stderr)
	}
	for n := min(len(args), 2); n >= 1; n-- {
		words := strings.Join(args[:n], " ")
		c, ok := commands[words]
		if !ok {
			continue
		}
		return exitCode(c, c.run(ctx, args[n:], stdout, stderr), stdout, stderr)
	}
	fmt.Fprintf(stderr, "shoal: unknown command %q\n\n", strings.Join(args, " "))
	usage(stderr)
	return 2
}

// exitCode reports a command's outcome: help on stdout (0), a usage error (2) or another
// error (1) on stderr.
func exitCode(c command, err error, stdout, stderr io.Writer) int {
	var help helpRequest
	switch {
	case err == nil:
		return 0
	case errors.As(err, &help):
		printHelp(stdout, c, help.fs)
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "shoal %s: %v\n", c.words, strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
		return 2
	default:
		fmt.Fprintf(stderr, "shoal %s: error: %v\n", c.words, err)
		return 1
	}
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
	fmt.Fprintln(w, "\nRun 'shoal help <command>' (or 'shoal <command> -h') for the flags and examples of a command.")
}

// examples end each command's help: two or three command lines a user can start from.
var examples = map[string][]string{
	"simulate": {
		"shoal simulate --seed 1                                  # 2NN on MNIST, 100 clients, stops at 97.5 %",
		"shoal simulate --partition shards --strategy fedavgm --rounds 300 --out runs/shards",
		"shoal simulate --dataset csv --data cancer.csv --label-column target --model logreg --config run.toml",
	},
	"server": {
		"shoal server --certs certs --wait-clients 3 --fraction 1 --rounds 20 --store runs/fl.db --out runs/mnist",
		"shoal server --certs certs --store runs/fl.db --resume --out runs/mnist   # after a crash",
		"shoal server --insecure --config runs/mnist/config.toml --out runs/again  # testing only",
	},
	"client": {
		"shoal client --server 127.0.0.1:7443 --certs certs --name alice --dataset csv --data local.csv",
		"shoal client --server 127.0.0.1:7443 --certs certs --name alice --clients 3 --partition-index 0",
		"shoal client --certs certs --name bob --require-secure-sum secagg --min-cohort 10",
	},
	"certs init":     {"shoal certs init --dir certs --hosts localhost,127.0.0.1", "shoal certs init --dir certs --hosts fl.example.org --force"},
	"certs client":   {"shoal certs client --dir certs --name alice", "shoal certs client --dir certs --name bob --json"},
	"certs revoke":   {"shoal certs revoke --dir certs --name mallory", "shoal certs list --dir certs   # then check it"},
	"certs operator": {"shoal certs operator --dir certs --name olga", "shoal ui --listen 10.0.0.5:8443 --certs certs runs/*"},
	"certs list":     {"shoal certs list --dir certs", "shoal certs list --dir certs --json"},
	"certs server":   {"shoal certs server --dir certs --hosts fl.example.org,10.0.0.5", "shoal certs server --dir certs --hosts localhost --json"},
	"privacy epsilon": {
		"shoal privacy epsilon --noise-multiplier 1.1 --sampling-rate 0.01 --steps 1000 --delta 1e-5",
		"shoal privacy epsilon --noise-multiplier 1.1 --sampling-rate 0.01 --steps 1000 --delta 1e-5 --accountant pld",
	},
	"privacy noise": {
		"shoal privacy noise --target-epsilon 5 --sampling-rate 0.1 --steps 200 --delta 1e-5",
		"shoal privacy noise --target-epsilon 1 --sampling-rate 0.01 --steps 1000 --delta 1e-6 --json",
	},
	"bench secagg": {"shoal bench secagg --clients 500 --dim 100000 --dropout 0.1", "shoal bench secagg --clients 1000 --graph complete --malicious --json"},
	"bench he":     {"shoal bench he --clients 100 --committee 5 --threshold 3", "shoal bench he --clients 1000 --dim 199210 --dropout 0.1 --json"},
}
