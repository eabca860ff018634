package gateway

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// audioUpstream serves h on a loopback port until the test ends.
func audioUpstream(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// audioBudgetConfig is a whisper endpoint in front of upstream, priced by pricing, with
// a spend budget of $0.001 a day.
func audioBudgetConfig(upstream, pricing string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 4MiB}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model, timeout: 20s, pricing: ` + pricing + `}
endpoints:
  - name: whisper
    type: transcriptions
    routes: [{backend: up}]
    limits: [{per: endpoint, usd: 0.001, window: day}]
`
}

// A $0.001/day budget on a whisper endpoint priced at $0.006 a minute: a 3 s WAV is
// estimated at 6 s ($0.0006, its 96 KB at 16,000 bytes a second) and costs $0.0003 (vLLM's
// usage {"type":"duration","seconds":3}). The first call settles at its cost, leaving
// $0.0007, which admits the second (had the estimate stood, $0.0004 would not); after it
// $0.0004 is left, under the third's estimate: 429 (README, Audio: "a spend (usd) limit
// is settled with the answer's cost").
func TestAudioSpendBudgetSettlesDurationCost(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{Seed: 3})
	g := startGateway(t, audioBudgetConfig(addr, `{audio_per_minute: 0.006, input_per_million: 1, output_per_million: 1}`))
	audioBudgetCalls(t, g)
}

// audioBudgetCalls makes the three calls of a 3 s WAV on audioBudgetConfig: two served,
// the third refused.
func audioBudgetCalls(t *testing.T, g *gw) {
	t.Helper()
	ct, body := audioForm(t, silentWAV(3), "model", "whisper")
	for i := range 2 {
		if status, _, b := postAudio(t, g, "/v1/audio/transcriptions", ct, body); status != 200 {
			t.Fatalf("call %d: observed %d %s; expected 200 (the budget settled at the calls' cost, $0.0003 each)", i+1, status, b)
		}
	}
	_, spent := seriesWith(scrapeAdmin(t, g), "tollgate_cost_usd_total", "endpoint", "whisper")
	if spent < 0.0006-1e-12 || spent > 0.0006+1e-12 {
		t.Fatalf("cost %v, want 0.0006", spent)
	}
	if status, _, b := postAudio(t, g, "/v1/audio/transcriptions", ct, body); status != 429 {
		t.Fatalf("call 3: observed %d %.80s with $0.0004 left; expected 429 (its estimate is $0.0006)", status, b)
	}
}

// The same with the README's own whisper pricing, {audio_per_minute: 0.006} alone: the
// estimate prices the audio (and is never 0), so the budget refuses as above.
func TestAudioSpendBudgetOnPerMinuteBackend(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{Seed: 3})
	g := startGateway(t, audioBudgetConfig(addr, `{audio_per_minute: 0.006}`))
	audioBudgetCalls(t, g)
}

// stream=true to an upstream that ignores it and answers at once (OpenAI's translations,
// whisper-1's transcriptions; mockllm's x-mock-audio-api: openai does the same): the
// gateway passes on its 200 JSON as it came, as the upstream wrote it.
func TestAudioStreamIgnoredByUpstreamIsPassedOn(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{Seed: 3})
	g := startGateway(t, audioConfig(addr))
	wav := silentWAV(2)
	ct, body := audioForm(t, wav, "model", "up-model", "stream", "true")
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/audio/translations", bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("x-mock-audio-api", "openai")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	direct, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("upstream answered %d %q %s, want its 200 JSON", resp.StatusCode, resp.Header.Get("Content-Type"), direct)
	}
	ct, body = audioForm(t, wav, "model", "whisper", "stream", "true")
	status, h, b := postAudio(t, g, "/v1/audio/translations", ct, body, "x-mock-audio-api", "openai")
	if status != 200 || b != string(direct) {
		t.Fatalf("observed %d %q %s through the gateway; expected the upstream's 200 %s", status, h.Get("Content-Type"), b, direct)
	}
}

// A response_format=text answer without a Content-Type goes on as it came, as
// text/plain: it is not JSON.
func TestAudioTextAnswerWithoutContentType(t *testing.T) {
	t.Parallel()
	addr := audioUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header()["Content-Type"] = nil // net/http would sniff one
		_, _ = io.WriteString(w, "Hello there.\n")
	})
	g := startGateway(t, audioConfig(addr))
	ct, body := audioForm(t, silentWAV(1), "model", "whisper", "response_format", "text")
	status, h, b := postAudio(t, g, "/v1/audio/transcriptions", ct, body)
	if status != 200 || b != "Hello there.\n" {
		t.Fatalf("observed %d %q %s; expected 200 with the upstream's text (text/plain)", status, h.Get("Content-Type"), b)
	}
}
