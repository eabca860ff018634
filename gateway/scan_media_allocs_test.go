//go:build !race

package gateway

import "testing"

// Finding a prompt's media costs the scan no allocations.
func TestScanBodyMediaAllocs(t *testing.T) {
	for _, body := range [][]byte{benchImageBody,
		[]byte(`{"model":"m","messages":[{"content":[{"image_url":"u"},{"input_audio":{"data":"QUJD","format":"wav"}},{"video_url":{"url":"v"}}]}]}`)} {
		var f fields
		if n := allocsPerRun(20, func() { scanBody(body, &f) }); n != 0 {
			t.Fatalf("%.1f allocations per scan of a body with media, want 0", n)
		}
	}
}
