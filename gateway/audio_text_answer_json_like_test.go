package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// A response_format=text transcript that happens to read as a JSON value other than
// an object (a spoken number, "null", a quoted word), from an upstream that names no
// Content-Type, is still a text answer: it goes on as it came, as text/plain (README,
// Audio), not as a JSON answer the gateway cannot read usage from (a 502). The audio
// API's JSON answers are objects.
func TestAudioTextAnswerThatReadsAsJSON(t *testing.T) {
	t.Parallel()
	for _, text := range []string{"7\n", "2024", "null\n", `"yes"` + "\n", "[1]\n", " true "} {
		t.Run(strings.TrimSpace(text), func(t *testing.T) {
			t.Parallel()
			addr := audioUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header()["Content-Type"] = nil // net/http would sniff one
				_, _ = io.WriteString(w, text)
			})
			g := startGateway(t, audioConfig(addr))
			ct, body := audioForm(t, silentWAV(1), "model", "whisper", "response_format", "text")
			status, h, b := postAudio(t, g, "/v1/audio/transcriptions", ct, body)
			if status != 200 || b != text || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
				t.Fatalf("observed %d %q %q; expected 200 with the upstream's text %q as text/plain", status, h.Get("Content-Type"), b, text)
			}
		})
	}
}
