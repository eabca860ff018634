package gateway

import (
	"testing"
)

// TestParseSizeDecimalExact: a size with a decimal fraction names a whole number of
// bytes (4.1MB is 4 100 000 bytes, 2.01KB 2 010), read exactly: through a float64
// product truncated it would be a byte short (4.1 × 10^6 = 4099999.9999999995), and a
// max_body_bytes of 8.2MB would answer 413 to a body of 8 200 000 bytes.
func TestParseSizeDecimalExact(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{{"4.1MB", 4100000}, {"8.2MB", 8200000}, {"2.01KB", 2010}, {"4.1GB", 4100000000}, {"32.3KB", 32300}} {
		t.Run(c.in, func(t *testing.T) {
			got, err := ParseSize(c.in)
			if err != nil || got != c.want {
				t.Errorf("ParseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
			}
		})
	}
	cfg, err := ParseConfig("t.yaml", []byte("server: {max_body_bytes: 8.2MB}\nbackends: {b: {provider: mock, model: m}}\nendpoints: [{name: chat, type: chat, routes: [{backend: b}]}]\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.MaxBodyBytes != 8200000 {
		t.Errorf("max_body_bytes: 8.2MB reads as %d bytes, want 8200000", cfg.Server.MaxBodyBytes)
	}
}
