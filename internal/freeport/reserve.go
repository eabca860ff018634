package freeport

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// lockName is the file, in the system's temporary directory, on whose bytes the
// processes calling Get (every test binary go test runs at once, the bench harness)
// reserve ports: a write lock on byte N reserves port N for as long as the process
// that took it lives. Without it two processes can each be told the same port, or
// one can be told the port of a server another has stopped for a while, and the
// loser of the race to bind it may take the winner's server for its own.
const lockName = "tollgate-freeport.lock"

var (
	lockOnce sync.Once
	// lockFile stays open for the process's life: closing any descriptor of the
	// file would drop every lock the process holds on it.
	lockFile *os.File
)

// reserve reports whether port is now this process's against the other processes
// calling Get. Where the lock file cannot be used (not writable), every port is.
func reserve(port int) bool {
	lockOnce.Do(func() {
		f, err := os.OpenFile(filepath.Join(os.TempDir(), lockName), os.O_RDWR|os.O_CREATE, 0o666)
		if err == nil {
			lockFile = f
		}
	})
	if lockFile == nil {
		return true
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart, Start: int64(port), Len: 1}
	err := syscall.FcntlFlock(lockFile.Fd(), syscall.F_SETLK, &lk)
	return err == nil || !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EACCES)
}
