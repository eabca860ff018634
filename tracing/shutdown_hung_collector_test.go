package tracing

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
)

// hungCollectorEnv makes the test binary serve as a collector that accepts
// every export and never answers it (see TestMain). It runs in a process of
// its own so that its server goroutines are not mistaken for the exporter's.
const hungCollectorEnv = "TOLLGATE_TEST_HUNG_COLLECTOR"

// serveHungCollector listens on a free port, prints the address, and serves
// an OTLP gRPC trace service whose Export waits until the client gives up. It
// returns when stdin closes: the test that started it has finished.
func serveHungCollector() int {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, &otlpReceiver{block: make(chan struct{})})
	go func() { _ = srv.Serve(lis) }()
	fmt.Println(lis.Addr().String())
	_, _ = io.Copy(io.Discard, os.Stdin)
	srv.Stop()
	return 0
}

// startHungCollector runs serveHungCollector in a child process and returns
// its address.
func startHungCollector(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), hungCollectorEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("hung collector: %v", err)
	}
	return strings.TrimSpace(line)
}

// A collector that accepts the export stream and never answers must not keep
// the exporter's goroutines (the batch processor's export, the gRPC
// connection) alive after a Shutdown whose deadline has passed: a reload
// retires a tracer each time, and each would leave its export hanging for the
// exporter's own timeout.
func TestShutdownPastDeadlineEndsExportToHungCollector(t *testing.T) {
	addr := startHungCollector(t)
	before := goleak.IgnoreCurrent()

	tr, err := New(context.Background(), Config{Exporter: ExporterOTLPGRPC, Endpoint: addr, Insecure: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	request(tr, context.Background(), shape{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = tr.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown against a hung collector = %v, want the deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Shutdown took %v past a 300ms deadline", d)
	}

	// The exporter's own timeout is 10s; 5s of polling tells a goroutine that
	// ends with Shutdown from one that waits out that timeout.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := goleak.Find(before)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines still running 5s after Shutdown returned: %v", err)
		}
	}
	if f := tr.Stats().ExportFailures; f == 0 {
		t.Errorf("the export cut short by Shutdown is not counted as a failure")
	}
}
