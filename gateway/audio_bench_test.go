package gateway

import (
	"bytes"
	"mime/multipart"
	"net"
	"testing"

	"github.com/valyala/fasthttp"
)

// benchAudioResp is vLLM's answer to a transcription: its text and its duration usage.
var benchAudioResp = []byte(`{"text":"Tollgate keeps its token buckets in Redis, so every replica draws on one.","usage":{"type":"duration","seconds":2}}`)

// newAudioServer is a gateway with a transcriptions endpoint in front of an upstream
// that answers every call with benchAudioResp.
func newAudioServer(tb testing.TB) *Server {
	return newTestServer(tb, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+serveFormUpstream(tb)+`/v1", model: up-model, pricing: {audio_per_minute: 0.006}}
endpoints:
  - {name: whisper, type: transcriptions, routes: [{backend: up}], limits: [{per: endpoint, usd: 1000000, window: minute}]}
logging: {level: error, access_log: false}
`)
}

// serveFormUpstream answers every request with benchAudioResp, its form left unparsed
// (fasthttp's server parses one by default, which would count its allocations here).
func serveFormUpstream(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &fasthttp.Server{DisablePreParseMultipartForm: true, Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(benchAudioResp)
	}}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// newAudioCtx is a transcription of 2 s of audio (a 64 KB WAV) as the OpenAI SDKs
// send it: model, language and response_format parts, then the file.
func newAudioCtx(tb testing.TB, s *Server) *fasthttp.RequestCtx {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	_ = w.WriteField("model", "whisper")
	_ = w.WriteField("language", "en")
	_ = w.WriteField("response_format", "json")
	fw, _ := w.CreateFormFile("file", "speech.wav")
	_, _ = fw.Write(silentWAV(2))
	_ = w.Close()
	ctx := newProxyCtx(b.Bytes())
	ctx.Request.SetRequestURI("/v1/audio/transcriptions")
	ctx.Request.Header.SetContentType(w.FormDataContentType())
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 || !bytes.Contains(ctx.Response.Body(), []byte(`"text"`)) {
		tb.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	return ctx
}

// BenchmarkProxyAudio is a transcription through the request path: the form scanned,
// its model part rewritten, a spend limit charged and settled with the answer's cost.
func BenchmarkProxyAudio(b *testing.B) {
	s := newAudioServer(b)
	ctx := newAudioCtx(b, s)
	b.SetBytes(int64(len(ctx.Request.Body())))
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}
