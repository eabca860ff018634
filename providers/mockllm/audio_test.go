package mockllm

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// audioText is vLLM's TranscriptionResponse; verboseAudio its verbose one.
type audioText struct {
	Text  string `json:"text"`
	Usage struct {
		Type    string `json:"type"`
		Seconds int    `json:"seconds"`
	} `json:"usage"`
}

type verboseAudio struct {
	Duration string `json:"duration"`
	Language string `json:"language"`
	Text     string `json:"text"`
	Segments []struct {
		ID          int     `json:"id"`
		Seek        int     `json:"seek"`
		Temperature float64 `json:"temperature"`
		Text        string  `json:"text"`
		Tokens      []int   `json:"tokens"`
	} `json:"segments"`
	Words json.RawMessage `json:"words"`
}

// threeSeconds is the fixture most tests send: 3 s of 16 kHz mono 16-bit silence.
var threeSeconds = WAV(3, 16000, 1, 16)

// audioForm is a multipart body with file (as audio.wav; none when nil) and the
// fields given as name, value pairs.
func audioForm(file []byte, kv ...string) (ct string, body []byte) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	if file != nil {
		fw, _ := w.CreateFormFile("file", "audio.wav")
		_, _ = fw.Write(file)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		_ = w.WriteField(kv[i], kv[i+1])
	}
	_ = w.Close()
	return w.FormDataContentType(), buf.Bytes()
}

// post sends body with Content-Type ct; hdr holds header name, value pairs.
func (h *harness) post(path, ct string, body []byte, hdr ...string) (*http.Response, []byte) {
	h.t.Helper()
	req, err := http.NewRequest("POST", "http://mock.test"+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("POST %s: reading the body: %v", path, err)
	}
	return resp, b
}

func (h *harness) transcribe(kv ...string) (*http.Response, []byte) {
	h.t.Helper()
	ct, body := audioForm(threeSeconds, kv...)
	return h.post("/v1/audio/transcriptions", ct, body)
}

func sdkClient(h *harness, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL("http://mock.test/v1"),
		option.WithUnsafeAllowHTTP(),
		option.WithHTTPClient(h.client),
		option.WithAPIKey("sk-mock"),
		option.WithMaxRetries(0),
	}, opts...)...)
}

// TestAudioSDK drives the audio routes with the official OpenAI Go SDK, as vLLM
// answers it: the transcript, its duration usage, the stream and a translation.
func TestAudioSDK(t *testing.T) {
	h := start(t, Options{Model: "whisper-mock", Seed: 2})
	client := sdkClient(h)
	ctx := context.Background()
	params := openai.AudioTranscriptionNewParams{
		File:     openai.File(bytes.NewReader(threeSeconds), "silence.wav", "audio/wav"),
		Model:    "whisper-mock",
		Language: openai.String("en"),
	}

	res, err := client.Audio.Transcriptions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	tr := res.AsTranscription()
	// 3 s at two words a second: six words, the last with its full stop.
	if words := strings.Fields(tr.Text); len(words) != 6 || !strings.HasPrefix(tr.Text, " ") || !strings.HasSuffix(tr.Text, ".") {
		t.Errorf("text %q: want six words, each after a space, ending in a full stop", tr.Text)
	}
	if tr.Usage.Type != "duration" || tr.Usage.Seconds != 3 {
		t.Errorf("usage %s, want duration, 3 seconds", tr.Usage.RawJSON())
	}

	t.Run("streamed, the same words", func(t *testing.T) {
		params := params
		params.File = openai.File(bytes.NewReader(threeSeconds), "silence.wav", "audio/wav")
		stream := client.Audio.Transcriptions.NewStreaming(ctx, params)
		var text strings.Builder
		n := 0
		for stream.Next() {
			var c chatResp
			if err := json.Unmarshal([]byte(stream.Current().RawJSON()), &c); err != nil {
				t.Fatal(err)
			}
			if c.Object != "transcription.chunk" || len(c.Choices) != 1 || c.Choices[0].Delta == nil {
				t.Fatalf("chunk %s", stream.Current().RawJSON())
			}
			text.WriteString(*c.Choices[0].Delta.Content)
			n++
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if text.String() != tr.Text || n != 6 {
			t.Errorf("stream %q in %d chunks, plain %q", text.String(), n, tr.Text)
		}
	})

	t.Run("translation", func(t *testing.T) {
		got, err := client.Audio.Translations.New(ctx, openai.AudioTranslationNewParams{
			File:  openai.File(bytes.NewReader(threeSeconds), "silence.wav", "audio/wav"),
			Model: "whisper-mock",
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(strings.Fields(got.Text)) != 6 || got.Text == tr.Text {
			t.Errorf("translation %q: want six words, not the transcript's %q", got.Text, tr.Text)
		}
		if strings.Contains(got.RawJSON(), "usage") {
			t.Errorf("%s: vLLM's translation has no usage", got.RawJSON())
		}
	})

	t.Run("an unknown model", func(t *testing.T) {
		p := params
		p.File = openai.File(bytes.NewReader(threeSeconds), "silence.wav", "audio/wav")
		p.Model = "gpt-4o-transcribe"
		_, err := client.Audio.Transcriptions.New(ctx, p)
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Message != "The model `gpt-4o-transcribe` does not exist." {
			t.Errorf("%v", err)
		}
	})
}

// TestAudioAnswers checks vLLM's answers byte for byte: json and text alike (vLLM
// answers text as JSON), a translation without usage, and verbose_json.
func TestAudioAnswers(t *testing.T) {
	h := start(t, Options{Seed: 1})
	_, plain := h.transcribe("model", "mock-1")
	tr := decode[audioText](t, plain)
	if want := `{"text":` + strconv.Quote(tr.Text) + `,"usage":{"type":"duration","seconds":3}}`; string(plain) != want {
		t.Errorf("json:\n%s\nwant\n%s", plain, want)
	}

	t.Run("text is answered as json", func(t *testing.T) {
		resp, b := h.transcribe("response_format", "text")
		if resp.Header.Get("Content-Type") != "application/json" || !bytes.Equal(b, plain) {
			t.Errorf("%s %s, want the json answer", resp.Header.Get("Content-Type"), b)
		}
	})

	t.Run("translation has no usage", func(t *testing.T) {
		ct, body := audioForm(threeSeconds)
		_, b := h.post("/v1/audio/translations", ct, body)
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil || len(got) != 1 || got["text"] == "" {
			t.Errorf("%s: want text alone", b)
		}
	})

	t.Run("verbose_json", func(t *testing.T) {
		resp, b := h.transcribe("response_format", "verbose_json", "temperature", "0.2", "language", "de")
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		// Six tokens in one segment over the 3 s.
		v := decode[verboseAudio](t, b)
		if v.Duration != "3.0" || v.Language != "de" || v.Text != tr.Text || string(v.Words) != "null" || len(v.Segments) != 1 {
			t.Fatalf("%s", b)
		}
		sg := v.Segments[0]
		if sg.Text != tr.Text || len(sg.Tokens) != 6 || sg.Temperature != 0.2 || sg.Seek != 0 {
			t.Errorf("segment %+v", sg)
		}
		// vLLM's TranscriptionSegment field order, no_speech_prob null.
		if !bytes.Contains(b, []byte(`"segments":[{"id":0,"avg_logprob":-0.`)) ||
			!bytes.Contains(b, []byte(`,"end":3.0,"no_speech_prob":null,"seek":0,"start":0.0,"temperature":0.2,"text":`)) {
			t.Errorf("segment fields out of vLLM's order: %s", b)
		}
	})
}

// TestAudioDuration checks where the duration comes from: a WAV header's frames and
// rate, whatever the channels and sample size, else the size at 16,000 bytes a
// second; and that long audio is generated in 30-second pieces.
func TestAudioDuration(t *testing.T) {
	h := start(t, Options{MaxTokens: 100})
	for _, tc := range []struct {
		name     string
		file     []byte
		duration string
		seconds  int
		words    int
	}{
		{"wav stereo 44.1 kHz", WAV(2.5, 44100, 2, 16), "2.5", 3, 5},
		{"wav 8 kHz 8-bit", WAV(1.25, 8000, 1, 8), "1.25", 2, 3},
		{"mp3 by its size", bytes.Repeat([]byte{0xff}, 40000), "2.5", 3, 5},
		// 65 s: pieces of 30, 30 and 5 s.
		{"long audio in pieces", bytes.Repeat([]byte{1}, 65*16000), "65.0", 65, 60 + 60 + 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct, body := audioForm(tc.file, "response_format", "verbose_json")
			_, b := h.post("/v1/audio/transcriptions", ct, body)
			v := decode[verboseAudio](t, b)
			if v.Duration != tc.duration || len(strings.Fields(v.Text)) != tc.words {
				t.Errorf("duration %s, %d words; want %s, %d", v.Duration, len(strings.Fields(v.Text)), tc.duration, tc.words)
			}
			ct, body = audioForm(tc.file)
			_, b = h.post("/v1/audio/transcriptions", ct, body)
			if want := `"usage":{"type":"duration","seconds":` + strconv.Itoa(tc.seconds) + `}`; !bytes.Contains(b, []byte(want)) {
				t.Errorf("%s, want %s", b, want)
			}
			if tc.seconds == 65 {
				seeks := map[int]bool{}
				for _, s := range v.Segments {
					seeks[s.Seek] = true
				}
				if len(seeks) != 3 || !seeks[0] || !seeks[30] || !seeks[60] {
					t.Errorf("segments seek %v, want the pieces at 0, 30 and 60 s", seeks)
				}
			}
		})
	}
}

// TestAudioHugeHeader: a WAV header claiming more than a day of audio is answered
// with its duration, and at most maxAudioPieces pieces of words.
func TestAudioHugeHeader(t *testing.T) {
	h := start(t, Options{MaxTokens: 2})
	f := WAV(0, 1, 1, 8)
	f = append(f, make([]byte, 100_000)...) // 100,000 frames at 1 Hz
	binary.LittleEndian.PutUint32(f[40:], 100_000)
	ct, body := audioForm(f)
	resp, b := h.post("/v1/audio/transcriptions", ct, body)
	v := decode[audioText](t, b)
	if resp.StatusCode != 200 || v.Usage.Seconds != 100_000 || len(strings.Fields(v.Text)) != 2*maxAudioPieces {
		t.Errorf("%d: %d seconds, %d words", resp.StatusCode, v.Usage.Seconds, len(strings.Fields(v.Text)))
	}
}

// TestAudioDeterministic: the transcript follows the file's bytes, the request's
// seed and --seed, and nothing else.
func TestAudioDeterministic(t *testing.T) {
	text := func(seed int64, file []byte, kv ...string) string {
		h := start(t, Options{Seed: seed})
		ct, body := audioForm(file, kv...)
		_, b := h.post("/v1/audio/transcriptions", ct, body)
		return decode[audioText](t, b).Text
	}
	other := WAV(3, 16000, 1, 16)
	other[len(other)-1] = 1
	a := text(1, threeSeconds)
	switch {
	case text(1, threeSeconds, "prompt", "names: Ada", "temperature", "0.7") != a:
		t.Error("the prompt or temperature changed the words")
	case text(1, other) == a:
		t.Error("other audio gave the same words")
	case text(2, threeSeconds) == a:
		t.Error("another --seed gave the same words")
	case text(1, threeSeconds, "seed", "9") == a:
		t.Error("the request's seed left the words as they were")
	}
}

// TestAudioStream checks vLLM's transcription stream byte for byte: one chunk a token
// with the usage so far (stream_continuous_usage_stats), the finish on the last, the
// usage chunk, [DONE]; the id is the X-Request-Id after transcribe-.
func TestAudioStream(t *testing.T) {
	h := start(t, Options{})
	ct, body := audioForm(WAV(1, 16000, 1, 16), "model", "mock-1", "stream", "true",
		"stream_include_usage", "true", "stream_continuous_usage_stats", "true", "prompt", "Hello")
	resp, b := h.post("/v1/audio/transcriptions", ct, body, "X-Request-Id", "req-7")
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream; charset=utf-8" {
		t.Errorf("content type %q", ct)
	}
	evs := parseSSE(t, b)
	// 1 s: two tokens; the prompt: 5 + 2 tokens of decoder prompt.
	if len(evs) != 4 {
		t.Fatalf("%d events: %s", len(evs), b)
	}
	var words [2]string
	for i := range 2 {
		c := decode[chatResp](t, []byte(evs[i].data))
		words[i] = *c.Choices[0].Delta.Content
	}
	head := `{"id":"transcribe-req-7","object":"transcription.chunk","created":1700000000,"model":"mock-1","choices":[`
	want := []string{
		head + `{"delta":{"content":` + strconv.Quote(words[0]) + `}}],"usage":{"prompt_tokens":7,"total_tokens":8,"completion_tokens":1}}`,
		head + `{"delta":{"content":` + strconv.Quote(words[1]) + `},"finish_reason":"stop","stop_reason":null}],"usage":{"prompt_tokens":7,"total_tokens":9,"completion_tokens":2}}`,
		head + `],"usage":{"prompt_tokens":7,"total_tokens":9,"completion_tokens":2}}`,
		`[DONE]`,
	}
	for i, ev := range evs {
		if ev.data != want[i] {
			t.Errorf("event %d:\n%s\nwant\n%s", i, ev.data, want[i])
		}
	}

	t.Run("model null when the form names none", func(t *testing.T) {
		ct, body := audioForm(threeSeconds, "stream", "1", "stream_include_usage", "true", "response_format", "text")
		_, b := h.post("/v1/audio/translations", ct, body)
		evs := parseSSE(t, b)
		first, usage := evs[0].data, evs[len(evs)-2].data
		if !strings.HasPrefix(first, `{"id":"translate-`) || !strings.Contains(first, `"object":"translation.chunk","created":1700000000,"model":null,"choices":`) ||
			strings.Contains(first, "usage") || strings.Contains(usage, "model") {
			t.Errorf("first %s\nusage %s", first, usage)
		}
	})

	t.Run("pieces finish one by one", func(t *testing.T) {
		ct, body := audioForm(bytes.Repeat([]byte{7}, 45*16000), "stream", "true")
		_, b := h.post("/v1/audio/transcriptions", ct, body)
		finishes := strings.Count(string(b), `"finish_reason":"length"`) + strings.Count(string(b), `"finish_reason":"stop"`)
		// 45 s: a piece of 30 s (60 words) and one of 15 (30 words).
		if finishes != 2 || !strings.HasSuffix(string(b), "data: [DONE]\n\n") || strings.Contains(string(b), `"usage"`) {
			t.Errorf("%d finishes in %s", finishes, b)
		}
	})
}

// TestAudioPacing checks the latencies: a plain answer waits TTFT and a TPOT per
// later step; a stream of two pieces paces the first and streams the second's tokens
// as soon as the first has reached their step, as vLLM generates pieces at once.
func TestAudioPacing(t *testing.T) {
	var log sleepLog
	h := start(t, Options{TTFT: 50 * time.Millisecond, TPOT: 5 * time.Millisecond, Sleep: log.sleep})
	h.transcribe()
	if got := log.take(); len(got) != 1 || got[0] != 50*time.Millisecond+5*5*time.Millisecond {
		t.Errorf("plain answer slept %v, want TTFT + 5 TPOT", got)
	}
	ct, body := audioForm(bytes.Repeat([]byte{3}, 31*16000), "stream", "true") // 62 and 2 words
	h.post("/v1/audio/transcriptions", ct, body, "x-mock-tokens", "3")
	got := log.take()
	want := []time.Duration{50 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond}
	if len(got) != len(want) {
		t.Fatalf("stream slept %v, want %v (the second piece's tokens ready)", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("stream slept %v, want %v", got, want)
		}
	}
}

// TestAudioErrors checks vLLM's refusals, bodies whole: its validation handler's
// (Bad Request), its HTTPExceptions' (the status phrase) and those raised while
// serving.
func TestAudioErrors(t *testing.T) {
	h := start(t, Options{APIKey: "k"})
	auth := []string{"Authorization", "Bearer k"}
	form := func(file []byte, kv ...string) (string, []byte) { return audioForm(file, kv...) }
	ctStrFile, strFile := form(nil, "file", "not a file")
	ctNoFile, noFile := form(nil, "model", "mock-1")
	ctWav, _ := form(threeSeconds)
	for _, tc := range []struct {
		name   string
		path   string
		ct     string
		body   []byte
		status int
		want   string
	}{
		{"no file", "/v1/audio/transcriptions", ctNoFile, noFile, 400,
			`{"error":{"message":"file: Field required","type":"Bad Request","param":null,"code":400}}`},
		{"a JSON body", "/v1/audio/transcriptions", "application/json", []byte(`{"model":"mock-1"}`), 400,
			`{"error":{"message":"file: Field required","type":"Bad Request","param":null,"code":400}}`},
		{"a body that is not the multipart it says", "/v1/audio/transcriptions", ctWav, []byte("no boundary here"), 400,
			`{"error":{"message":"There was an error parsing the body","type":"Bad Request","param":null,"code":400}}`},
		{"multipart without a boundary", "/v1/audio/transcriptions", "multipart/form-data", noFile, 400,
			`{"error":{"message":"There was an error parsing the body","type":"Bad Request","param":null,"code":400}}`},
		{"file as a string", "/v1/audio/transcriptions", ctStrFile, strFile, 422,
			`{"error":{"message":"Expected 'file' to be a file-like object, not 'str'.","type":"Unprocessable Entity","param":null,"code":422}}`},
		{"translation's file as a string", "/v1/audio/translations", ctStrFile, strFile, 400,
			`{"error":{"message":"file: Expected UploadFile, received: \u003cclass 'str'\u003e","type":"Bad Request","param":null,"code":400}}`},
		{"an unknown response_format", "", "", nil, 400,
			`{"error":{"message":"response_format: Input should be 'json', 'text', 'srt', 'verbose_json' or 'vtt'","type":"Bad Request","param":null,"code":400}}`},
		{"srt, which vLLM does not answer", "", "", nil, 400,
			"{\"error\":{\"message\":\"Currently only support response_format: `text`, `json` or `verbose_json`\",\"type\":\"BadRequestError\",\"param\":null,\"code\":400}}"},
		{"verbose_json streamed", "", "", nil, 400,
			`{"error":{"message":"verbose_json format doesn't support streaming case","type":"BadRequestError","param":null,"code":400}}`},
		{"a stream option without stream", "", "", nil, 400,
			"{\"error\":{\"message\":\"Stream options can only be defined when `stream=True`.\",\"type\":\"Bad Request\",\"param\":\"stream_continuous_usage_stats\",\"code\":400}}"},
		{"a stream that is no boolean", "", "", nil, 400,
			`{"error":{"message":"stream: Input should be a valid boolean, unable to interpret input","type":"Bad Request","param":null,"code":400}}`},
		{"a granularity that is neither", "", "", nil, 400,
			`{"error":{"message":"timestamp_granularities[].1: Input should be 'word' or 'segment'","type":"Bad Request","param":null,"code":400}}`},
		{"a negative temperature", "", "", nil, 400,
			`{"error":{"message":"temperature must be non-negative, got -0.5.","type":"BadRequestError","param":"temperature","code":400}}`},
		{"an unknown model", "", "", nil, 404,
			"{\"error\":{\"message\":\"The model `whisper-1` does not exist.\",\"type\":\"NotFoundError\",\"param\":\"model\",\"code\":404}}"},
		{"an empty file", "", "", nil, 400,
			`{"error":{"message":"Invalid or unsupported audio file.","type":"BadRequestError","param":null,"code":400}}`},
		{"a RIFF file that is no WAVE", "", "", nil, 400,
			`{"error":{"message":"Invalid or unsupported audio file.","type":"BadRequestError","param":null,"code":400}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct, body := tc.ct, tc.body
			if ct == "" {
				switch tc.name {
				case "an unknown response_format":
					ct, body = form(threeSeconds, "response_format", "xml")
				case "srt, which vLLM does not answer":
					ct, body = form(threeSeconds, "response_format", "srt")
				case "verbose_json streamed":
					ct, body = form(threeSeconds, "response_format", "verbose_json", "stream", "true")
				case "a stream option without stream":
					ct, body = form(threeSeconds, "stream_continuous_usage_stats", "false")
				case "a stream that is no boolean":
					ct, body = form(threeSeconds, "stream", "maybe")
				case "a granularity that is neither":
					ct, body = form(threeSeconds, "timestamp_granularities[]", "segment", "timestamp_granularities[]", "sentence")
				case "a negative temperature":
					ct, body = form(threeSeconds, "temperature", "-0.5")
				case "an unknown model":
					ct, body = form(threeSeconds, "model", "whisper-1")
				case "an empty file":
					ct, body = form([]byte{})
				case "a RIFF file that is no WAVE":
					ct, body = form([]byte("RIFF\x04\x00\x00\x00AVI LIST"))
				}
			}
			path := tc.path
			if path == "" {
				path = "/v1/audio/transcriptions"
			}
			resp, b := h.post(path, ct, body, auth...)
			if resp.StatusCode != tc.status || string(b) != tc.want {
				t.Errorf("%d %s\nwant %d %s", resp.StatusCode, b, tc.status, tc.want)
			}
		})
	}

	t.Run("the API key", func(t *testing.T) {
		ct, body := form(threeSeconds)
		if resp, b := h.post("/v1/audio/transcriptions", ct, body); resp.StatusCode != 401 {
			t.Errorf("%d %s", resp.StatusCode, b)
		}
	})
	t.Run("GET", func(t *testing.T) {
		if resp, _ := h.must("GET", "/v1/audio/translations", "", auth...); resp.StatusCode != 405 {
			t.Errorf("%d", resp.StatusCode)
		}
	})
	t.Run("not served with --api anthropic", func(t *testing.T) {
		ha := start(t, Options{API: APIAnthropic})
		ct, body := form(threeSeconds)
		if resp, b := ha.post("/v1/audio/transcriptions", ct, body); resp.StatusCode != 404 {
			t.Errorf("%d %s", resp.StatusCode, b)
		}
	})
}

// TestAudioFaults: the x-mock-* headers, the error rate and cut streams apply to the
// audio routes as to the others, and /metrics counts them.
func TestAudioFaults(t *testing.T) {
	h := start(t, Options{})
	ct, body := audioForm(threeSeconds, "stream", "true")
	if resp, b := h.post("/v1/audio/transcriptions", ct, body, "x-mock-status", "503"); resp.StatusCode != 503 || !bytes.Contains(b, []byte(`"type":"ServiceUnavailableError"`)) {
		t.Errorf("x-mock-status: %d %s", resp.StatusCode, b)
	}
	req, _ := http.NewRequest("POST", "http://mock.test/v1/audio/transcriptions", bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("x-mock-cut-after", "2")
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || strings.Count(string(b), "data: ") != 2 {
		t.Errorf("cut stream: %v after %q", err, b)
	}
	if st := h.s.Stats(); st.CutStreams != 1 || st.InjectedErrors != 1 || st.Requests["/v1/audio/transcriptions"] != 2 {
		t.Errorf("stats %+v", st)
	}

	he := start(t, Options{ErrorRate: 1})
	if resp, b := he.post("/v1/audio/translations", ct, body); resp.StatusCode != 500 || !bytes.Contains(b, []byte("injected error")) {
		t.Errorf("error rate: %d %s", resp.StatusCode, b)
	}
	_, m := he.must("GET", "/metrics", "")
	if !bytes.Contains(m, []byte(`mockllm_requests_total{route="/v1/audio/translations"} 1.0`)) {
		t.Errorf("metrics do not count the route")
	}
}

// TestAudioOpenAI checks x-mock-audio-api: openai, OpenAI's answers: gpt-4o-transcribe's
// token usage and stream events through the SDK, text as text/plain, whisper-1's
// translations in every format, and OpenAI's refusals.
func TestAudioOpenAI(t *testing.T) {
	h := start(t, Options{Model: "gpt-4o-transcribe"})
	client := sdkClient(h, option.WithHeader("x-mock-audio-api", "openai"))
	ctx := context.Background()
	params := func() openai.AudioTranscriptionNewParams {
		return openai.AudioTranscriptionNewParams{
			File:   openai.File(bytes.NewReader(threeSeconds), "silence.wav", "audio/wav"),
			Model:  openai.AudioModelGPT4oTranscribe,
			Prompt: openai.String("The quick brown fox"),
		}
	}
	res, err := client.Audio.Transcriptions.New(ctx, params())
	if err != nil {
		t.Fatal(err)
	}
	tr := res.AsTranscription()
	u := tr.Usage
	// 3 s: 30 audio tokens; the prompt: 5 text tokens.
	if u.Type != "tokens" || u.InputTokens != 35 || u.InputTokenDetails.AudioTokens != 30 || u.InputTokenDetails.TextTokens != 5 ||
		u.OutputTokens != 6 || u.TotalTokens != 41 || strings.HasPrefix(tr.Text, " ") || len(strings.Fields(tr.Text)) != 6 {
		t.Errorf("%s", res.RawJSON())
	}

	t.Run("stream", func(t *testing.T) {
		stream := client.Audio.Transcriptions.NewStreaming(ctx, params())
		var text strings.Builder
		var done openai.TranscriptionStreamEventUnion
		for stream.Next() {
			switch ev := stream.Current(); ev.Type {
			case "transcript.text.delta":
				text.WriteString(ev.Delta)
			case "transcript.text.done":
				done = ev
			default:
				t.Errorf("event %s", ev.RawJSON())
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if text.String() != tr.Text || done.Text != tr.Text || done.Usage.TotalTokens != 41 || done.Usage.InputTokenDetails.AudioTokens != 30 {
			t.Errorf("deltas %q, done %s; plain %q", text.String(), done.RawJSON(), tr.Text)
		}
		ct, body := audioForm(threeSeconds, "model", "gpt-4o-transcribe", "stream", "true")
		_, b := h.post("/v1/audio/transcriptions", ct, body, "x-mock-audio-api", "openai")
		if strings.Contains(string(b), "[DONE]") || !strings.HasPrefix(string(b), `data: {"type":"transcript.text.delta","delta":"`) {
			t.Errorf("%s", b)
		}
	})

	t.Run("text", func(t *testing.T) {
		ct, body := audioForm(threeSeconds, "model", "gpt-4o-transcribe", "response_format", "text")
		resp, b := h.post("/v1/audio/transcriptions", ct, body, "x-mock-audio-api", "openai")
		if resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || string(b) != tr.Text+"\n" {
			t.Errorf("%s %q", resp.Header.Get("Content-Type"), b)
		}
	})

	t.Run("translations as whisper-1", func(t *testing.T) {
		got, err := client.Audio.Translations.New(ctx, openai.AudioTranslationNewParams{
			File: openai.File(bytes.NewReader(threeSeconds), "silence.wav", "audio/wav"), Model: "gpt-4o-transcribe",
		})
		if err != nil || len(strings.Fields(got.Text)) != 6 {
			t.Fatalf("%v %+v", err, got)
		}
		for format, want := range map[string]string{
			"text": got.Text + "\n",
			"srt":  "1\n00:00:00,000 --> 00:00:03,000\n" + got.Text + "\n\n",
			"vtt":  "WEBVTT\n\n00:00:00.000 --> 00:00:03.000\n" + got.Text + "\n\n",
		} {
			ct, body := audioForm(threeSeconds, "model", "gpt-4o-transcribe", "response_format", format)
			resp, b := h.post("/v1/audio/translations", ct, body, "x-mock-audio-api", "openai")
			if resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || string(b) != want {
				t.Errorf("%s: %s %q, want %q", format, resp.Header.Get("Content-Type"), b, want)
			}
		}
		ct, body := audioForm(threeSeconds, "model", "gpt-4o-transcribe", "response_format", "verbose_json")
		_, b := h.post("/v1/audio/translations", ct, body, "x-mock-audio-api", "openai")
		if !bytes.HasPrefix(b, []byte(`{"task":"translate","language":"english","duration":3.0,"text":`)) ||
			!bytes.Contains(b, []byte(`"segments":[{"id":0,"seek":0,"start":0.0,"end":3.0,"text":`)) {
			t.Errorf("%s", b)
		}
	})

	for _, tc := range []struct {
		name, ct string
		body     []byte
		status   int
		want     string
	}{
		{"json body", "application/json", []byte(`{}`), 400,
			`{"error":{"message":"Invalid Content-Type header (application/json), expected multipart/form-data. (HINT: If you're using curl, you can pass -H 'Content-Type: multipart/form-data')","type":"invalid_request_error","param":null,"code":null}}`},
		{"srt from gpt-4o-transcribe", "", nil, 400,
			`{"error":{"message":"response_format 'srt' is not compatible with model 'gpt-4o-transcribe'. Use 'json' or 'text' instead.","type":"invalid_request_error","param":"response_format","code":"unsupported_value"}}`},
		{"an unknown format", "", nil, 400,
			`{"error":{"message":"Invalid value: 'xml'. Supported values are: 'json', 'text', 'srt', 'verbose_json', 'vtt', and 'diarized_json'.","type":"invalid_request_error","param":"response_format","code":"invalid_value"}}`},
		{"no model", "", nil, 400,
			`{"error":{"message":"Missing required parameter: 'model'.","type":"invalid_request_error","param":"model","code":"missing_required_parameter"}}`},
		{"an unknown model", "", nil, 404,
			"{\"error\":{\"message\":\"The model `whisper-2` does not exist or you do not have access to it.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"model_not_found\"}}"},
		{"a file without a filename", "", nil, 400,
			`{"error":{"message":"Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']","type":"invalid_request_error","param":"file","code":"invalid_value"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct, body := tc.ct, tc.body
			switch tc.name {
			case "srt from gpt-4o-transcribe":
				ct, body = audioForm(threeSeconds, "model", "gpt-4o-transcribe", "response_format", "srt")
			case "an unknown format":
				ct, body = audioForm(threeSeconds, "model", "gpt-4o-transcribe", "response_format", "xml")
			case "no model":
				ct, body = audioForm(threeSeconds)
			case "an unknown model":
				ct, body = audioForm(threeSeconds, "model", "whisper-2")
			case "a file without a filename":
				ct, body = audioForm(nil, "model", "gpt-4o-transcribe", "file", "RIFF")
			}
			resp, b := h.post("/v1/audio/transcriptions", ct, body, "x-mock-audio-api", "openai")
			if resp.StatusCode != tc.status || string(b) != tc.want {
				t.Errorf("%d %s\nwant %d %s", resp.StatusCode, b, tc.status, tc.want)
			}
		})
	}
}
