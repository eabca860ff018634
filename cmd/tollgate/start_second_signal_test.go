package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A start held up (here a --config naming a FIFO that a writer holds open without
// writing, so that reading the config never ends) still ends on a second SIGTERM, as a
// drain does (README: "a second SIGTERM/SIGINT ... ends the process at once (a second
// Ctrl-C)"), rather than leaving only SIGKILL.
func TestSecondSignalEndsHeldStart(t *testing.T) {
	t.Parallel()
	fifo := filepath.Join(t.TempDir(), "tollgate.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	var logs lineBuffer
	cmd := exec.Command(binary, "serve", "--config", fifo)
	cmd.Env = append(os.Environ(), "TOLLGATE_RUNTIME_TUNING=off")
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// A FIFO opens for writing without blocking only once a reader has it open: the
	// gateway is then reading its config, its signal handling set up before that.
	var w *os.File
	waitUntil(t, func() bool {
		f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return false
		}
		w = f
		return true
	})
	defer w.Close()
	// Signals are sent until the process ends: the first starts the stop, a later one
	// ends it; how soon the first is taken in is not this test's concern.
	deadline := time.After(20 * time.Second)
	for {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("exit %v, want the process ended by SIGTERM; logs:\n%s", err, logs.String())
			}
			return
		case <-deadline:
			t.Fatalf("SIGTERMs for 20 s did not end a start reading a config that never ends; logs:\n%s", logs.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
