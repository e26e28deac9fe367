// Package process runs a model-training program of the user's own — any framework, any
// language — as a child process and makes it an fl.Client, so that Shoal federates it under its
// own privacy stack. The child only trains and evaluates: it receives the global parameters and
// returns new ones; everything privacy-critical stays in Go, in this package and above it
// (validation of the returned parameters, clipping and local noise through trainer.Privatize,
// the secure sum, accounting, transport and identity).
//
// The channel is the child's stdin and stdout, carrying the framed messages of the trainer
// protocol (docs/trainer.md): a handshake with the parameter layout, the initial parameters, fit
// and evaluate. A Trainer owns one child and serves one call at a time; a call that outlives its
// deadline kills the child, a child that crashed is restarted (and handshaken again) at the next
// call, and a child that speaks another protocol version is refused with a message saying so.
package process

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Config says how to start the trainer.
type Config struct {
	// Command is the trainer's command line, run by /bin/sh (so quoting, variables and
	// redirections of stderr work as in a shell).
	Command string
	// Dir is the working directory (default: the current one).
	Dir string
	// Env is added to the inherited environment.
	Env []string
	// Stderr receives the trainer's stderr (default os.Stderr); its last lines also go into the
	// error that reports a crash.
	Stderr io.Writer
	// StartTimeout bounds starting the child and its handshake (default 2 minutes: importing a
	// framework can be slow).
	StartTimeout time.Duration
	// CallTimeout, when > 0, bounds every call (initial parameters, fit, evaluate) on top of the
	// caller's context. A call past its deadline kills the child.
	CallTimeout time.Duration
	// Logger receives restarts and kills (default slog.Default()).
	Logger *slog.Logger
}

// Error is a failure the trainer itself reported (an "error" message): the task failed, the
// child is healthy and keeps serving.
type Error struct{ Message string }

func (e *Error) Error() string { return "trainer: " + e.Message }

// Trainer is a running trainer process. Its methods may be called from several goroutines; they
// are served one at a time.
type Trainer struct {
	cfg Config

	mu       sync.Mutex
	proc     *child // nil when the child is dead, until the next call restarts it
	layout   Layout
	name     string
	restarts int
	closed   bool
}

// Start starts the trainer and performs the handshake. A command that does not start, exits, or
// does not complete the handshake in time is an error naming the command with the end of its
// stderr.
func Start(ctx context.Context, cfg Config) (*Trainer, error) {
	if strings.TrimSpace(cfg.Command) == "" {
		return nil, errors.New("trainer: empty command")
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 2 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := &Trainer{cfg: cfg}
	p, hello, err := t.spawn(ctx)
	if err != nil {
		return nil, err
	}
	t.proc, t.layout, t.name = p, hello.Layout, hello.Trainer
	return t, nil
}

// Layout is the trainer's parameter layout from its handshake.
func (t *Trainer) Layout() Layout { return t.layout }

// Name is the name the trainer gave in its handshake.
func (t *Trainer) Name() string { return t.name }

// Restarts counts the times a crashed or killed child was restarted.
func (t *Trainer) Restarts() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.restarts
}

// child is one running trainer process and its ends of the channel.
type child struct {
	cmd   *exec.Cmd
	in    *os.File
	w     *bufio.Writer
	out   *os.File
	r     *bufio.Reader
	tail  *tailWriter
	done  chan struct{} // closed when the process has exited and its stderr is drained
	wait  error
	start time.Time
}

// spawn starts a child and performs the handshake under StartTimeout.
func (t *Trainer) spawn(ctx context.Context) (*child, header, error) {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.StartTimeout)
	defer cancel()
	p, err := t.startChild()
	if err != nil {
		return nil, header{}, err
	}
	stop := context.AfterFunc(ctx, p.kill)
	hello, err := p.handshake()
	stop()
	if err != nil {
		p.kill()
		<-p.done
		if ctx.Err() != nil {
			err = fmt.Errorf("no handshake within %v", t.cfg.StartTimeout)
		}
		return nil, header{}, fmt.Errorf("trainer %q: %w%s", t.cfg.Command, err, p.describeExit())
	}
	return p, hello, nil
}

// startChild starts the process with its stdin and stdout on pipes of ours.
func (t *Trainer) startChild() (*child, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("trainer: pipe: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("trainer: pipe: %w", err)
	}
	growPipe(inW)
	growPipe(outR)
	cmd := exec.Command("/bin/sh", "-c", "exec "+t.cfg.Command)
	cmd.Dir = t.cfg.Dir
	cmd.Env = append(os.Environ(), t.cfg.Env...)
	cmd.Stdin, cmd.Stdout = inR, outW
	tail := &tailWriter{w: t.cfg.Stderr}
	cmd.Stderr = tail
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // kill takes the trainer's own children too
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("trainer %q: start: %w", t.cfg.Command, err)
	}
	p := &child{cmd: cmd, in: inW, w: bufio.NewWriterSize(inW, 1<<16), out: outR,
		r: bufio.NewReaderSize(outR, 1<<16), tail: tail, done: make(chan struct{}), start: time.Now()}
	go func() {
		p.wait = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// growPipe enlarges a pipe's kernel buffer to 1 MiB where the system allows it (fewer context
// switches for large models); failure only costs throughput.
func growPipe(f *os.File) {
	_, _ = unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, 1<<20)
}

// handshake sends hello and checks the trainer's answer: same protocol version, valid layout.
func (p *child) handshake() (header, error) {
	if err := writeFrame(p.w, frame{hdr: map[string]any{"type": "hello", "protocol": Version}}); err != nil {
		return header{}, fmt.Errorf("send hello: %w", err)
	}
	h, plen, err := readHeader(p.r)
	if err != nil {
		return header{}, fmt.Errorf("read hello: %w", err)
	}
	if plen != 0 {
		return header{}, fmt.Errorf("%w: hello carries a payload", errProtocol)
	}
	if h.Type == "error" {
		return header{}, fmt.Errorf("refused the handshake: %s", h.Message)
	}
	if h.Type != "hello" {
		return header{}, fmt.Errorf("%w: expected hello, got %q", errProtocol, h.Type)
	}
	if h.Protocol != Version {
		return header{}, fmt.Errorf("trainer speaks trainer protocol version %d, this shoal speaks version %d "+
			"(upgrade the side that is behind; see docs/trainer.md)", h.Protocol, Version)
	}
	if err := h.Layout.validate(); err != nil {
		return header{}, fmt.Errorf("%w: %v", errProtocol, err)
	}
	return h, nil
}

// kill ends the child and everything it started.
func (p *child) kill() {
	if p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	p.in.Close()
}

// describeExit is ": exited (status); stderr: …" once the child has exited, else "".
func (p *child) describeExit() string {
	select {
	case <-p.done:
	case <-time.After(2 * time.Second):
		return ""
	}
	p.out.Close()
	s := "; the process exited"
	if p.wait != nil {
		s = "; the process exited: " + p.wait.Error()
	}
	if tail := p.tail.String(); tail != "" {
		s += "; its stderr ends with:\n" + tail
	}
	return s
}

// call sends req and hands the reply to recv, restarting a dead child first. A call past ctx's
// deadline, a crash and a protocol violation kill the child (the next call restarts it); an
// "error" reply fails only the call.
func (t *Trainer) call(ctx context.Context, what string, req frame, recv func(h header, r *bufio.Reader) error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("trainer: closed")
	}
	if t.proc == nil {
		if err := t.restart(ctx); err != nil {
			return err
		}
	}
	if t.cfg.CallTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.cfg.CallTimeout)
		defer cancel()
	}
	p := t.proc
	stop := context.AfterFunc(ctx, p.kill)
	err := exchange(p, req, recv)
	killed := !stop() // the deadline fired and killed the child
	var remote *Error
	switch {
	case err == nil && !killed:
		return nil
	case errors.As(err, &remote) && !killed:
		return err
	case killed || ctx.Err() != nil:
		p.kill()
		t.proc = nil
		<-p.done
		t.cfg.Logger.Warn("trainer killed: no answer before the deadline", "call", what, "command", t.cfg.Command)
		return fmt.Errorf("trainer %s: no answer before the deadline (%w); the process was killed and restarts at the next task", what, ctx.Err())
	default:
		p.kill()
		t.proc = nil
		return fmt.Errorf("trainer %s: %w%s", what, err, p.describeExit())
	}
}

// restart replaces a dead child; the new one must announce the same layout.
func (t *Trainer) restart(ctx context.Context) error {
	p, hello, err := t.spawn(ctx)
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	if !slices.EqualFunc(hello.Layout, t.layout, func(a, b Tensor) bool {
		return a.Name == b.Name && a.DType == b.DType && slices.Equal(a.Shape, b.Shape)
	}) {
		p.kill()
		<-p.done
		return fmt.Errorf("trainer %q: restarted with a different parameter layout", t.cfg.Command)
	}
	t.proc = p
	t.restarts++
	t.cfg.Logger.Warn("trainer restarted", "command", t.cfg.Command, "restarts", t.restarts)
	return nil
}

// exchange writes one request and reads its reply.
func exchange(p *child, req frame, recv func(h header, r *bufio.Reader) error) error {
	if err := writeFrame(p.w, req); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	h, plen, err := readHeader(p.r)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return errors.New("the trainer closed its stdout (crashed?)")
		}
		return err
	}
	if h.Type == "error" {
		if plen != 0 {
			return fmt.Errorf("%w: error message carries a payload", errProtocol)
		}
		return &Error{Message: h.Message}
	}
	return recv(h, p.r)
}

// Close asks the trainer to shut down, waits a few seconds, then kills it.
func (t *Trainer) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	p := t.proc
	t.proc = nil
	if p == nil {
		return nil
	}
	_ = writeFrame(p.w, frame{hdr: map[string]any{"type": "shutdown"}})
	p.in.Close()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.kill()
		<-p.done
	}
	p.out.Close()
	return nil
}

// tailWriter passes writes through and keeps the last 2 KiB for error messages.
type tailWriter struct {
	w   io.Writer
	mu  sync.Mutex
	buf []byte
}

func (t *tailWriter) Write(b []byte) (int, error) {
	t.mu.Lock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > 2048 {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-2048:]...)
	}
	t.mu.Unlock()
	_, _ = t.w.Write(b) // the trainer's logs are best effort
	return len(b), nil
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimRight(string(t.buf), "\n")
}
