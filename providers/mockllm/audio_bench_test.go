package mockllm

import "testing"

// audioBenchCase is an audio request as a client sends it: 3 s of WAV and the usual
// fields.
type audioBenchCase struct {
	name, path, ct string
	body           []byte
	hdr            []string
}

func newAudioBenchCase(name, path string, hdr []string, kv ...string) audioBenchCase {
	ct, body := audioForm(threeSeconds, append([]string{"model", "mock-1", "language", "en"}, kv...)...)
	return audioBenchCase{name, path, ct, body, hdr}
}

var audioBenchCases = []audioBenchCase{
	newAudioBenchCase("transcription", "/v1/audio/transcriptions", nil, "temperature", "0.2"),
	newAudioBenchCase("transcription-verbose", "/v1/audio/transcriptions", nil, "response_format", "verbose_json"),
	newAudioBenchCase("transcription-stream", "/v1/audio/transcriptions", []string{"X-Request-Id", "0123456789abcdef"},
		"stream", "true", "stream_include_usage", "true", "stream_continuous_usage_stats", "true"),
	newAudioBenchCase("translation", "/v1/audio/translations", nil),
	newAudioBenchCase("openai-transcription", "/v1/audio/transcriptions", []string{"x-mock-audio-api", "openai"}, "prompt", "Names: Ada"),
	newAudioBenchCase("openai-transcription-stream", "/v1/audio/transcriptions", []string{"x-mock-audio-api", "openai"}, "stream", "true"),
	newAudioBenchCase("openai-translation-srt", "/v1/audio/translations", []string{"x-mock-audio-api", "openai"}, "response_format", "srt"),
}

// BenchmarkHandlerAudio is BenchmarkHandler for the audio routes: the multipart
// form, the WAV header, the hash of the audio and the answer (or every event).
func BenchmarkHandlerAudio(b *testing.B) {
	for _, bc := range audioBenchCases {
		b.Run(bc.name, func(b *testing.B) {
			s, err := New(Options{MaxTokens: 64})
			if err != nil {
				b.Fatal(err)
			}
			ctx := requestCtx(bc.path, "", bc.hdr...)
			ctx.Request.Header.SetContentType(bc.ct)
			ctx.Request.SetBody(bc.body)
			serveOnce(s, ctx)
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.body)))
			for b.Loop() {
				serveOnce(s, ctx)
			}
		})
	}
}
