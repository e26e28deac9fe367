package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"shoal/fl"
	"shoal/transport/grpctransport"
	"shoal/ui"
)

func init() {
	register(command{words: "ui", summary: "serve the dashboard of finished runs (run directories) in a browser", run: runUI})
	examples["ui"] = []string{
		"shoal ui runs/central runs/distributed          # http://127.0.0.1:8080/compare",
		"shoal ui --listen 10.0.0.5:8443 --certs certs runs/*   # TLS, operator certificates only",
	}
}

// uiOptions are the dashboard flags of simulate, server and coordinator (not part of a run's
// configuration).
type uiOptions struct {
	UI      string `json:"-"`
	UICerts string `json:"-"`
}

func (u *uiOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&u.UI, "ui", "", "serve the live dashboard on this address (e.g. "+ui.DefaultAddr+"; a non-loopback address needs --ui-certs)")
	fs.StringVar(&u.UICerts, "ui-certs", "", "certificate directory whose operator certificates (shoal certs operator) open the dashboard over TLS")
}

// check refuses, before any data is loaded, a non-loopback --ui that has no certificates to
// serve TLS with (the server's and the coordinator's own --certs may serve: startUI decides
// there, and parseCoordinatorOptions before a standby waits for its election).
func (u uiOptions) check(command string) error {
	if u.UI == "" || u.UICerts != "" || command == "server" || command == "coordinator" {
		return nil
	}
	if loop, err := ui.Loopback(u.UI); err != nil || !loop {
		return usageErrorf("--ui: %v", cmp.Or(err, fmt.Errorf("%w: %s is not loopback; pass --ui-certs DIR with operator certificates "+
			"(shoal certs operator), or listen on %s", ui.ErrNeedsOperatorTLS, u.UI, ui.DefaultAddr)))
	}
	return nil
}

// uiRun is the live dashboard of a simulate or server run (nil: none).
type uiRun struct {
	live   *ui.Live
	srv    *ui.Server
	rounds int
	wait   bool // a deployment: a round first waits for its clients
	stderr io.Writer
}

// startUI serves the live dashboard when --ui is set; certs is the directory of operator
// certificates for a non-loopback --ui without --ui-certs (the server's --certs).
func startUI(o simOptions, certs string, e *fl.Engine, clients func() []ui.Client, wire func() (in, out uint64), stderr io.Writer, logger *slog.Logger) (*uiRun, error) {
	if o.UI == "" {
		return nil, nil
	}
	cfg, err := configTOML(o)
	if err != nil {
		return nil, err
	}
	info := ui.LiveInfo{ID: filepath.Base(o.Out), Name: filepath.Base(o.Out), Kind: "live " + o.command,
		Rounds: o.Rounds, Config: cfg, Protection: protection(e, o), Clients: clients, Wire: wire}
	if o.command == "coordinator" {
		info.ClientsNote = coordinatorClientsNote
	}
	live, err := ui.NewLive(info)
	if err != nil {
		return nil, err
	}
	h, err := ui.New(live)
	if err != nil {
		return nil, err
	}
	if loop, _ := ui.Loopback(o.UI); loop || o.UICerts != "" {
		certs = o.UICerts
	}
	srv, err := ui.Listen(o.UI, certs, h, logger)
	if err != nil {
		return nil, usageErrorf("--ui: %v", err)
	}
	// A deployment's round first waits for its clients (a coordinator's: for the edges' devices).
	return &uiRun{live: live, srv: srv, rounds: o.Rounds, wait: clients != nil || o.command == "coordinator", stderr: stderr}, nil
}

// attach feeds the dashboard from the engine's hooks, after the hooks already set, and
// announces its address.
func (d *uiRun) attach(e *fl.Engine, resumed []fl.RoundReport) {
	if d == nil {
		return
	}
	d.live.Resumed(resumed)
	// The address is announced once the resumed rounds are in: whoever follows it (a test, an
	// operator after a takeover) sees the run's history from the first request.
	fmt.Fprintf(d.stderr, "dashboard: %s\n", d.srv.URL)
	onRound, before := e.OnRound, e.BeforeRound
	e.OnRound = func(r fl.RoundReport) {
		if onRound != nil {
			onRound(r)
		}
		d.live.Round(r)
	}
	e.BeforeRound = func(ctx context.Context, round int) error {
		step := fmt.Sprintf("round %d of %d", round, d.rounds)
		if round == 0 {
			step = "the secure-sum setup"
		}
		if d.wait {
			d.live.Status("waiting for clients before " + step)
		}
		if before != nil {
			if err := before(ctx, round); err != nil {
				return err
			}
		}
		if round == 0 {
			d.live.Status("the secure-sum setup running")
		} else {
			d.live.Running(strings.ToUpper(step[:1]) + step[1:] + " running")
		}
		return nil
	}
}

// finish records how the run ended; the pages get their last update before the server stops.
func (d *uiRun) finish(e *fl.Engine, runErr error) {
	if d != nil {
		d.live.Finish(e.StopReason, runErr)
	}
}

func (d *uiRun) close() {
	if d != nil {
		d.srv.Close(3 * time.Second)
	}
}

// uiClients is the transport's client status for the dashboard.
func uiClients(srv *grpctransport.Server) func() []ui.Client { return srv.Clients }

// runUI is shoal ui: the dashboard of finished run directories, until a signal.
func runUI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("shoal ui", flag.ContinueOnError)
	listen := fs.String("listen", ui.DefaultAddr, "address to serve the dashboard on (a non-loopback address needs --certs)")
	certs := fs.String("certs", "", "certificate directory: serve TLS to its operator certificates only (shoal certs operator)")
	runStore := fs.String("store", "", "also serve the runs of this run store (shoal server --store: an SQLite file or a postgres:// URL), as committed when the dashboard starts")
	dirs, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(dirs) == 0 && *runStore == "" {
		return usageErrorf("name at least one run directory or --store (shoal ui [--listen ADDR] RUNDIR...)")
	}
	var sources []ui.Source
	if *runStore != "" {
		if sources, err = ui.OpenStore(ctx, *runStore); err != nil {
			return usageErrorf("--store: %v", err)
		}
	}
	for _, d := range dirs {
		src, err := ui.OpenDir(d)
		if err != nil {
			return usageErrorf("%v", err)
		}
		sources = append(sources, src)
	}
	h, err := ui.New(sources...)
	if err != nil {
		return err
	}
	srv, err := ui.Listen(*listen, *certs, h, nil)
	if err != nil {
		return usageErrorf("--listen: %v", err)
	}
	defer srv.Close(time.Second)
	fmt.Fprintf(stderr, "dashboard of %d runs: %s (Ctrl-C stops it)\n", len(sources), srv.URL)
	<-ctx.Done()
	return nil
}

// parseInterleaved parses flags and positional arguments in any order.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		fs.SetOutput(io.Discard)
		fs.Usage = func() {}
		if err := fs.Parse(args); err != nil {
			return nil, parseArgs(fs, args) // the same one-line errors and help as every command
		}
		if fs.NArg() == 0 {
			return rest, nil
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
