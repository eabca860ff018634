package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// silentWAV is seconds of 16 kHz mono 16-bit silence as a WAV file.
func silentWAV(seconds int) []byte { return mockllm.WAV(float64(seconds), 16000, 1, 16) }

// audioConfig is a gateway with a transcriptions endpoint (whisper) and a chat one in
// front of upstream, audio priced at $0.006 a minute and tokens at $1 a million.
func audioConfig(upstream string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 4MiB, shutdown_grace: 2s}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model, timeout: 20s,
       pricing: {audio_per_minute: 0.006, input_per_million: 1, output_per_million: 1}}
endpoints:
  - {name: whisper, type: transcriptions, routes: [{backend: up}]}
  - {name: chat, type: chat, routes: [{backend: up}]}
`
}

// audioForm is a multipart body with the given fields, then the file, and its
// Content-Type.
func audioForm(t *testing.T, file []byte, fields ...string) (string, []byte) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for i := 0; i+1 < len(fields); i += 2 {
		if err := w.WriteField(fields[i], fields[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if file != nil {
		fw, err := w.CreateFormFile("file", "speech.wav")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fw.Write(file)
	}
	_ = w.Close()
	return w.FormDataContentType(), b.Bytes()
}

// postAudio posts body to path with content type ct and extra headers (name, value
// pairs), returning the status, the header and the body.
func postAudio(t *testing.T, g *gw, path, ct string, body []byte, header ...string) (int, http.Header, string) {
	t.Helper()
	hdr := map[string]string{"Content-Type": ct}
	for i := 0; i+1 < len(header); i += 2 {
		hdr[header[i]] = header[i+1]
	}
	resp, b := postRaw(t, http.DefaultClient, g.url+path, string(body), hdr)
	return resp.StatusCode, resp.Header, string(b)
}

// README, Audio: a transcriptions endpoint serves OpenAI's audio API through the
// official SDK: the model part rewritten to the backend's, the rest sent as it came,
// the answer passed on; vLLM's duration usage priced per minute.
func TestAudioTranscriptionsThroughSDK(t *testing.T) {
	t.Parallel()
	mock, addr := startMock(t, mockllm.Options{Seed: 3})
	g := startGateway(t, audioConfig(addr))
	c := g.client()
	wav := silentWAV(3)
	var resp *http.Response
	res, err := c.Audio.Transcriptions.New(context.Background(), openai.AudioTranscriptionNewParams{
		File: openai.File(bytes.NewReader(wav), "speech.wav", "audio/wav"), Model: "whisper",
	}, option.WithResponseInto(&resp), option.WithHeader("X-Request-Id", "audio-1"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Text == "" || resp.Header.Get("X-Tollgate-Backend") != "up" || resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("answer %q, header %v", res.Text, resp.Header)
	}
	if n := mock.Stats().Requests["/v1/audio/transcriptions"]; n != 1 {
		t.Fatalf("upstream transcriptions %d, want 1 (the model rewritten to up-model: mockllm refuses any other)", n)
	}
	if line := accessLine(t, g, "audio-1"); line["audio_seconds"] != 3.0 || line["endpoint"] != "whisper" {
		t.Fatalf("access line %v, want audio_seconds 3", line)
	}
	tr, err := c.Audio.Translations.New(context.Background(), openai.AudioTranslationNewParams{
		File: openai.File(bytes.NewReader(wav), "speech.wav", "audio/wav"), Model: "whisper",
	})
	if err != nil || tr.Text == "" {
		t.Fatalf("translation %+v: %v", tr, err)
	}
	// 3 s of audio at $0.006 a minute; the translation reports no usage (vLLM's).
	fams := scrapeAdmin(t, g)
	if _, v := seriesWith(fams, "tollgate_cost_usd_total", "backend", "up"); v < 0.0003-1e-12 || v > 0.0003+1e-12 {
		t.Fatalf("cost %v, want 0.0003 (3 s at $0.006 a minute)", v)
	}
	if _, v := seriesWith(fams, "tollgate_requests_total", "endpoint", "whisper", "code", "200"); v != 2 {
		t.Fatalf("requests %v, want 2", v)
	}
}

// Streams pass through event by event: vLLM's chunks end with [DONE]; OpenAI's end
// with transcript.text.done and no [DONE] (the gateway adds none), its token usage
// counted.
func TestAudioStreams(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{Seed: 3})
	g := startGateway(t, audioConfig(addr))
	c := g.client()
	wav := silentWAV(2)
	stream := c.Audio.Transcriptions.NewStreaming(context.Background(), openai.AudioTranscriptionNewParams{
		File: openai.File(bytes.NewReader(wav), "speech.wav", "audio/wav"), Model: "whisper",
	}, option.WithHeader("x-mock-audio-api", "openai"))
	var text strings.Builder
	var done bool
	for stream.Next() {
		ev := stream.Current()
		switch ev.Type {
		case "transcript.text.delta":
			text.WriteString(ev.Delta)
		case "transcript.text.done":
			done = true
			if ev.Text != text.String() || ev.Usage.InputTokens == 0 {
				t.Fatalf("done event %+v after deltas %q", ev, text.String())
			}
		}
	}
	if err := stream.Err(); err != nil || !done {
		t.Fatalf("stream: %v, done %v", err, done)
	}
	for _, api := range []string{"openai", "vllm"} {
		ct, body := audioForm(t, wav, "model", "whisper", "stream", "true", "stream_include_usage", "true")
		hdr := []string{"X-Test", "1"}
		if api == "openai" {
			ct, body = audioForm(t, wav, "model", "whisper", "stream", "true")
			hdr = []string{"x-mock-audio-api", "openai"}
		}
		status, h, b := postAudio(t, g, "/v1/audio/transcriptions", ct, body, hdr...)
		if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("%s: %d %v %s", api, status, h, b)
		}
		var last string
		sc := bufio.NewScanner(strings.NewReader(b))
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") {
				last = sc.Text()
			}
		}
		if api == "openai" && !strings.Contains(last, "transcript.text.done") {
			t.Fatalf("OpenAI stream ends with %q, want its transcript.text.done (no [DONE] added)", last)
		}
		if api == "vllm" && last != "data: [DONE]" {
			t.Fatalf("vLLM stream ends with %q, want [DONE]", last)
		}
	}
	fams := scrapeAdmin(t, g)
	if _, v := seriesWith(fams, "tollgate_tokens_total", "endpoint", "whisper", "type", "input"); v == 0 {
		t.Fatal("the streams' token usage was not counted")
	}
}

// Text answers (OpenAI's response_format text, srt) come back as they were written,
// under their own content type.
func TestAudioTextAnswer(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{Seed: 3})
	g := startGateway(t, audioConfig(addr))
	ct, body := audioForm(t, silentWAV(2), "model", "whisper", "response_format", "srt")
	status, h, b := postAudio(t, g, "/v1/audio/translations", ct, body, "x-mock-audio-api", "openai")
	if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") || !strings.Contains(b, "-->") {
		t.Fatalf("srt: %d %q %q", status, h.Get("Content-Type"), b)
	}
}

// Bodies the audio API cannot take are refused before any upstream is called, each
// with a 400 (404 for an unknown model) that says why, in OpenAI's error shape.
func TestAudioRefusals(t *testing.T) {
	t.Parallel()
	mock, addr := startMock(t, mockllm.Options{Seed: 3})
	g := startGateway(t, audioConfig(addr))
	wav := silentWAV(1)
	form := func(fields ...string) (string, []byte) { return audioForm(t, wav, fields...) }
	ct, twice := form("model", "whisper", "model", "whisper")
	ctNoFile, noFile := audioForm(t, nil, "model", "whisper")
	ctNoModel, noModel := form("language", "en")
	ctChat, chat := form("model", "chat")
	ctUnknown, unknown := form("model", "nope")
	ctOK, ok := form("model", "whisper")
	for _, tc := range []struct {
		name, ct string
		body     []byte
		status   int
		code     string
	}{
		{"json body", "application/json", []byte(`{"model":"whisper"}`), 400, "invalid_content_type"},
		{"no boundary", "multipart/form-data", ok, 400, "invalid_content_type"},
		{"model twice", ct, twice, 400, "invalid_multipart"},
		{"no file", ctNoFile, noFile, 400, "missing_file"},
		{"no model", ctNoModel, noModel, 400, "missing_model"},
		{"cut body", ctOK, ok[:len(ok)/2], 400, "invalid_multipart"},
		{"chat endpoint", ctChat, chat, 400, "model_not_supported"},
		{"unknown model", ctUnknown, unknown, 404, "model_not_found"},
	} {
		status, _, b := postAudio(t, g, "/v1/audio/transcriptions", tc.ct, tc.body)
		if status != tc.status || !strings.Contains(b, `"code":"`+tc.code+`"`) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, status, b, tc.status, tc.code)
		}
	}
	if n := mock.Stats().Requests["/v1/audio/transcriptions"]; n != 0 {
		t.Fatalf("%d refused bodies reached the upstream", n)
	}
	// And a chat call naming the transcriptions endpoint.
	c := g.client()
	_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "whisper", Messages: userMsg("hi")})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 {
		t.Fatalf("chat on a transcriptions endpoint: %v", err)
	}
}

// Spans of audio calls: the server span named by the route, both spans' operation the
// call's own (a translation is translations, not its endpoint's transcriptions), and
// no body captured even with capture_content.
func TestAudioSpans(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{Seed: 3})
	g, exp := startTracedGateway(t, strings.Replace(audioConfig(addr), "backends:",
		"tracing: {exporter: otlp-grpc, sample_ratio: 1, capture_content: true}\nbackends:", 1))
	for i, op := range []string{"transcriptions", "translations"} {
		id := "au-" + strconv.Itoa(i)
		ct, body := audioForm(t, silentWAV(1), "model", "whisper")
		if status, _, b := postAudio(t, g, "/v1/audio/"+op, ct, body, "X-Request-Id", id); status != 200 {
			t.Fatalf("%s: %d %s", op, status, b)
		}
		spans := requestSpans(t, g, exp, id)
		server, up := spans["POST /v1/audio/"+op], spans[op+" up-model"]
		if len(server) != 1 || len(up) != 1 {
			t.Fatalf("%s: spans %v", op, keys(spans))
		}
		for _, s := range []tracetest.SpanStub{server[0], up[0]} {
			s := s.Snapshot()
			if v, _ := attr(s, "gen_ai.operation.name"); v.AsString() != op {
				t.Errorf("%s: span %s gen_ai.operation.name %q", op, s.Name(), v.Emit())
			}
			for _, ev := range s.Events() {
				for _, a := range ev.Attributes {
					if strings.Contains(a.Value.Emit(), "RIFF") || strings.Contains(a.Value.Emit(), "form-data") {
						t.Errorf("%s: span %s event %s carries the body", op, s.Name(), ev.Name)
					}
				}
			}
		}
	}
}
