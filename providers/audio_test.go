package providers

import (
	"bufio"
	"io"
	"math"
	"strings"
	"testing"
)

// readAudio reads an audio API stream's events as sendForm's reader does.
func readAudio(in string) ([]Event, error) {
	s := &sseReader{br: bufio.NewReaderSize(strings.NewReader(in), 64), audio: true}
	var out []Event
	for {
		var ev Event
		if err := s.Next(&ev); err != nil {
			if err == io.EOF {
				return out, nil
			}
			return out, err
		}
		ev.Data = append([]byte(nil), ev.Data...)
		out = append(out, ev)
	}
}

// vLLM's transcription stream ends with [DONE]; OpenAI's with transcript.text.done,
// which carries the usage, and no [DONE]: both end cleanly, the latter as Terminal, so
// that the gateway writes no [DONE] of its own. A stream cut before either fails.
func TestAudioStreams(t *testing.T) {
	vllm := `data: {"id":"trsc-1","object":"transcription.chunk","created":1,"model":"w","choices":[{"delta":{"content":" Hello"},"finish_reason":null,"stop_reason":null}]}` + "\n\n" +
		`data: {"id":"trsc-1","object":"transcription.chunk","created":1,"model":"w","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":3,"total_tokens":23}}` + "\n\n" +
		"data: [DONE]\n\n"
	evs, err := readAudio(vllm)
	if err != nil || len(evs) != 3 || !evs[0].Content || !evs[1].HasUsage || evs[1].Usage.Input != 20 || evs[1].Usage.Output != 3 ||
		!evs[2].Done || evs[2].Terminal {
		t.Fatalf("vLLM stream: %+v, %v", evs, err)
	}
	openai := `data: {"type":"transcript.text.delta","delta":"Hello"}` + "\n\n" +
		`data: {"type":"transcript.text.delta","delta":" there"}` + "\n\n" +
		`data: {"type":"transcript.text.done","text":"Hello there","usage":{"type":"tokens","input_tokens":14,"input_token_details":{"text_tokens":0,"audio_tokens":14},"output_tokens":4,"total_tokens":18}}` + "\n\n"
	evs, err = readAudio(openai)
	if err != nil || len(evs) != 4 || !evs[0].Content || !evs[1].Content || evs[2].Content || !evs[2].HasUsage ||
		evs[2].Usage.Input != 14 || evs[2].Usage.Output != 4 || !evs[3].Done || !evs[3].Terminal {
		t.Fatalf("OpenAI stream: %+v, %v", evs, err)
	}
	// The last event without its blank line, the connection closed: whole all the same.
	evs, err = readAudio(strings.TrimSuffix(openai, "\n\n"))
	if err != nil || len(evs) != 4 || !evs[3].Terminal {
		t.Fatalf("OpenAI stream closed on its last event: %+v, %v", evs, err)
	}
	for _, cut := range []string{
		`data: {"type":"transcript.text.delta","delta":"Hello"}` + "\n\n",
		vllm[:strings.Index(vllm, "data: [DONE]")],
	} {
		if _, err := readAudio(cut); err == nil {
			t.Errorf("a stream cut before its end read whole: %q", cut)
		}
	}
}

// A usage of type duration (whisper-1's, vLLM's) is the audio's length, priced per
// minute, and no token count; one that says nothing believable is no usage.
func TestAudioUsageDuration(t *testing.T) {
	var u Usage
	if !parseUsage([]byte(`{"type":"duration","seconds":90.5}`), &u) || u.AudioMillis != 90500 || u.Counted() {
		t.Fatalf("usage %+v", u)
	}
	p := Pricing{AudioPerMinute: 0.006, InputPerMillion: 1}
	if c := p.Cost(u); math.Abs(c-0.006*90.5/60) > 1e-12 {
		t.Fatalf("cost %v, want %v", c, 0.006*90.5/60)
	}
	for _, bad := range []string{`{"seconds":-1}`, `{"seconds":"9"}`, `{"seconds":1e20}`} {
		u = Usage{}
		parseUsage([]byte(bad), &u)
		if u.AudioMillis != 0 {
			t.Errorf("%s: %d ms", bad, u.AudioMillis)
		}
	}
	// Tokens and duration from one answer: both priced.
	u = Usage{}
	parseUsage([]byte(`{"type":"tokens","input_tokens":1000000,"output_tokens":0,"seconds":60}`), &u)
	if c := p.Cost(u); math.Abs(c-1.006) > 1e-9 {
		t.Fatalf("cost %v, want 1.006", c)
	}
	if (Pricing{AudioPerMinute: 0.006}).Free() {
		t.Fatal("a pricing with only an audio price is free")
	}
}

func TestAppendFormBody(t *testing.T) {
	body := "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n--b--\r\n"
	i := strings.Index(body, "whisper")
	call := &Call{Kind: Transcription, Body: []byte(body), Model: [2]int{i, i + len("whisper")}}
	got := string(appendFormBody(nil, call, []byte("openai/whisper-large-v3")))
	if want := strings.Replace(body, "whisper", "openai/whisper-large-v3", 1); got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}

func TestAudioKinds(t *testing.T) {
	if Transcription.Endpoint() != Transcription || Translation.Endpoint() != Transcription {
		t.Fatal("audio kinds not served by transcriptions endpoints")
	}
	if !Transcription.Form() || !Translation.Form() || Chat.Form() {
		t.Fatal("Form")
	}
	if Transcription.Path() != "/audio/transcriptions" || Translation.Path() != "/audio/translations" {
		t.Fatal("paths")
	}
	if got := operationURL("http://vllm:8000/v1", Translation.Path()); got != "http://vllm:8000/v1/audio/translations" {
		t.Fatal(got)
	}
}
