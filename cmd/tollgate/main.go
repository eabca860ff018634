// Command tollgate is the Tollgate LLM gateway.
//
//	tollgate [serve] [--config FILE]    serve the API and admin listeners
//	tollgate validate --config FILE     check a config; exit 1 listing FILE:LINE: key: problem
//	tollgate version                    print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tollgate/tollgate/gateway"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	if servesAPI(os.Args[1:]) {
		reexecTuned()
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("tollgate "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "configs/tollgate.yaml", "config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch cmd {
	case "version":
		fmt.Fprintln(stdout, "tollgate", version)
		return 0
	case "validate":
		return validate(*config, stdout, stderr)
	case "serve":
		return serve(*config, stderr)
	}
	fmt.Fprintf(stderr, "tollgate: unknown command %q (serve, validate, version)\n", cmd)
	return 2
}

func validate(path string, stdout, stderr io.Writer) int {
	if err := gateway.Validate(path); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintln(stdout, path+": ok")
	return 0
}

func serve(path string, stderr io.Writer) int {
	s, err := gateway.New(path, gateway.Options{})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
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
