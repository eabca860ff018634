package pemfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Files that are not regular, too large or missing are refused with their path, at
// once: a config naming /dev/zero must not hang its load.
func TestReadRefuses(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, make([]byte, MaxSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/dev/zero":                  "/dev/zero is not a regular file",
		dir:                          "is not a regular file",
		big:                          "is larger than 4 MiB",
		filepath.Join(dir, "absent"): "absent: no such file or directory",
	} {
		if _, err := Read(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Read(%s) = %v, want %q", path, err, want)
		}
	}
	if _, err := CertPool("/dev/zero"); err == nil || !strings.HasPrefix(err.Error(), "cannot be read: ") {
		t.Errorf("CertPool(/dev/zero) = %v", err)
	}
}

func TestCertPoolNotPEM(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.pem")
	if err := os.WriteFile(p, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := CertPool(p); err == nil || err.Error() != "holds no PEM certificate" {
		t.Fatalf("err = %v", err)
	}
}
