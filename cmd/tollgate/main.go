// Command tollgate is the Tollgate LLM gateway.
//
//	tollgate [serve] [--config FILE]    serve the API and admin listeners
//	tollgate validate --config FILE     check a config; exit 1 listing FILE:LINE: key: problem
//	                                    (a valid one's warnings listed, exit 0)
//	tollgate version                    print the version
//
// The command comes first; an argument left after the flags exits 2.
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
	"strings"
	"syscall"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"

	"github.com/tollgate/tollgate/gateway"
	"github.com/tollgate/tollgate/internal/buildinfo"
	"github.com/tollgate/tollgate/internal/logq"
)

// version is set at build time with -ldflags "-X main.version=…"; left "dev", the
// version printed is read from the build (buildVersion).
var version = "dev"

func main() {
	// Spans name the build as `tollgate version` does (service.version).
	buildinfo.SetGiven(version)
	if servesAPI(os.Args[1:]) {
		reexecTuned()
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// commands are the subcommands; the command line is COMMAND [FLAGS], serve when the
// command is left out.
var commands = []string{"serve", "validate", "version", "key"}

// usage is the help text's head; the flags follow it.
const usage = `Usage:
  tollgate [serve] [--config FILE]    serve the API and admin listeners
  tollgate validate --config FILE     check a config; exit 1 listing FILE:LINE: key: problem
  tollgate version                    print the version
  tollgate key [--expires-at T]       make a client API key (that expires at T, RFC 3339)
  tollgate key --hash                 hash a client API key read on stdin
  tollgate help [COMMAND]             print this usage, or COMMAND's (as --help, -h)

Flags:
`

// isHelpFlag reports whether arg asks for a command's usage, as its flag set takes it.
func isHelpFlag(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "--h"
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	if cmd == "help" {
		// `tollgate help [COMMAND]` is `tollgate [COMMAND] --help`, as `go help` is:
		// the usage on stdout, exit 0.
		switch {
		case len(args) > 2 || len(args) == 2 && !isHelpFlag(args[1]):
			fmt.Fprintf(stderr, "tollgate help: unexpected argument %q (tollgate help [COMMAND])\n", args[len(args)-1])
			return 2
		case len(args) == 0 || args[0] == "help" || isHelpFlag(args[0]):
			// `tollgate help --help` is `tollgate [COMMAND] --help` with the command help.
			cmd = "serve"
		default:
			cmd = args[0]
		}
		args = []string{"--help"}
	}
	if !slices.Contains(commands, cmd) {
		fmt.Fprintf(stderr, "tollgate: unknown command %q (serve, validate, version, key, help)\n", cmd)
		return 2
	}
	if cmd == "key" {
		return keyCmd(args, stdout, stderr)
	}
	fs := flag.NewFlagSet("tollgate "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "configs/tollgate.yaml", "config file")
	// The usage is printed below, once Parse has said whether it was asked for.
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		// Help asked for is an answer, not a usage error: it goes to stdout and exits
		// 0. After a usage error (an unknown flag, which Parse has printed) it goes to
		// stderr and exits 2.
		code := 2
		if errors.Is(err, flag.ErrHelp) {
			code = 0
			fs.SetOutput(stdout)
		}
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
		return code
	}
	// An argument left after the flags is refused rather than ignored: ignored, a file
	// named without --config would leave the default file checked or served, and a
	// command written after the flags would serve.
	if fs.NArg() > 0 {
		stray := fs.Arg(0)
		switch {
		case slices.Contains(commands, stray):
			fmt.Fprintf(stderr, "tollgate: unexpected argument %q: the command comes first (tollgate %s --config %s)\n", stray, stray, *config)
		case cmd == "version":
			fmt.Fprintf(stderr, "tollgate version: unexpected argument %q\n", stray)
		default:
			fmt.Fprintf(stderr, "tollgate %s: unexpected argument %q: name the config file with --config %s\n", cmd, stray, stray)
		}
		return 2
	}
	if *config == "" && cmd != "version" {
		// `--config "$CONFIG"` with CONFIG unset: opening "" would say
		// "open : no such file or directory", as if a file had gone missing.
		fmt.Fprintf(stderr, "tollgate %s: --config is empty: name the config file (default %s)\n", cmd, fs.Lookup("config").DefValue)
		return 2
	}
	switch cmd {
	case "version":
		fmt.Fprintln(stdout, "tollgate", buildVersion())
		return 0
	case "validate":
		return validate(*config, stdout, stderr)
	}
	return serve(*config, stderr)
}

func validate(path string, stdout, stderr io.Writer) int {
	warnings, err := gateway.CheckConfig(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	// A valid config's warnings do not fail it: the gateway starts with them.
	for _, w := range warnings {
		fmt.Fprintln(stderr, w)
	}
	fmt.Fprintln(stdout, path+": ok")
	return 0
}

func serve(path string, stderr io.Writer) int {
	// Signals are caught from the start: a SIGHUP while the gateway starts would
	// otherwise end the process, and a SIGTERM then ends it once it has started.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// A log reader that goes away (a log shipper restarting, `| logger` killed)
	// would otherwise end the process with SIGPIPE on the next log line, and every
	// request in flight with it: the write fails instead and the line is lost.
	signal.Ignore(syscall.SIGPIPE)
	// Before the config is loaded and the gateway built, so that the runtime collects
	// toward the container's limit from the start; said once the log exists.
	mem := applyMemoryLimit(memlimit.FromCgroup)
	// A log reader that stalls (a shipper under back-pressure, a stopped sidecar)
	// would block every log write once the pipe is full, and with it every answer,
	// whose access line is written before it goes out, and the shutdown: the logs
	// go through a bounded queue instead, which drops what does not fit.
	logs := logq.New(stderr)
	defer closeLogs(logs)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		// The first SIGTERM or SIGINT drains; a second one while it drains ends the
		// process at once, as the signal does by default. So does a second one while
		// the gateway starts: a start held up (a config path naming a FIFO nothing
		// writes, a Redis that does not answer) is not left deaf to Ctrl-C.
		stop()
	}()
	s, err := gateway.New(path, gateway.Options{LogOutput: logs})
	if err != nil {
		// After the warnings New may have queued.
		fmt.Fprintln(logs, err)
		return 1
	}
	mem.log(s.Logger())
	go mem.follow(ctx, memlimit.FromCgroup, s.Logger(), memLimitRefresh)
	go func() {
		for range hup {
			_ = s.Reload()
		}
	}()
	if err := s.Serve(ctx); err != nil && !errors.Is(err, context.Canceled) {
		s.Logger().Error("server stopped", "error", err.Error())
		return 1
	}
	return 0
}

// logFlushTimeout bounds the writing of the queued log lines at exit: enough for any
// reader that reads, and short enough that a stalled one keeps the exit within
// README's shutdown_grace plus a few seconds.
const logFlushTimeout = time.Second

// closeLogs writes the queued log lines (the last access lines, "shutting down") and
// gives up on a reader that does not take them within logFlushTimeout.
func closeLogs(logs *logq.Queue) {
	ctx, cancel := context.WithTimeout(context.Background(), logFlushTimeout)
	defer cancel()
	_, _ = logs.Close(ctx)
}
