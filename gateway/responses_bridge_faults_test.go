package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
)

// scrapeUntil scrapes the gateway's series until ok holds of them, for up to 3 s: a
// request is counted once its answer has ended, which its client may see first.
func scrapeUntil(t *testing.T, g *gw, ok func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		s := scrapeSeries(t, g)
		if ok(s) || time.Now().After(deadline) {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// bridgeChunk is a chat.completion.chunk with a content delta (none when empty) and a
// finish_reason (a raw JSON value, null when empty).
func bridgeChunk(content, finish string) string {
	delta := `{}`
	if content != "" {
		delta = `{"content":"` + content + `"}`
	}
	if finish == "" {
		finish = "null"
	}
	return `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":` + delta +
		`,"finish_reason":` + finish + `}]}` + "\n\n"
}

// An application streams a Responses call through a bridged backend (responses_api:
// chat) whose server sends the answer and its usage (7 in, 3 out), then drops the
// connection before data: [DONE]: the usage in a chunk of its own after the finish
// chunk, or on the finish chunk itself (Mistral's API, Gemini's OpenAI endpoint,
// LiteLLM, older llama.cpp). Either is the last a chat stream sends: the client gets
// the whole response, response.completed with that usage and no error, and the gateway
// counts the 7 and 3 tokens (metrics, cost, the token limit settled), as it counts them
// for the same stream called as chat.
func TestResponsesBridgeUsageBeforeCut(t *testing.T) {
	t.Parallel()
	const usage = `"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}`
	for name, end := range map[string]string{
		"usage chunk": bridgeChunk("", `"stop"`) +
			`data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[],` + usage + "}\n\n",
		"usage on the finish chunk": `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],` +
			usage + "}\n\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			addr, _ := scriptedUpstream(t, func(n int, c net.Conn, req *http.Request) {
				head := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
				events := bridgeChunk("Hel", "") + end
				_, _ = io.WriteString(c, head+strconv.FormatInt(int64(len(events)), 16)+"\r\n"+events+"\r\n")
				time.Sleep(20 * time.Millisecond)
				c.Close()
			})
			g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  tgi: {provider: openai, base_url: "http://`+addr+`/v1", model: tgi-model, responses_api: chat, timeout: 5s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: tgi}], retries: 0}
  - {name: resp, type: chat, routes: [{backend: tgi}], retries: 0}
`)
			// The chat call, as the reference.
			req, _ := http.NewRequest("POST", g.url+"/v1/chat/completions", strings.NewReader(`{"model":"chat","messages":[{"role":"user","content":"hi"}],"stream":true}`))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()

			c := g.client()
			s := c.Responses.NewStreaming(context.Background(), responses.ResponseNewParams{
				Model: "resp", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")},
			})
			var final responses.Response
			var types []string
			for s.Next() {
				ev := s.Current()
				types = append(types, ev.Type)
				if ev.Type == "response.completed" {
					final = ev.Response
				}
			}
			if err := s.Err(); err != nil {
				t.Fatalf("bridged stream: %v after %v; expected its end after response.completed", err, types)
			}
			if final.OutputText() != "Hel" || final.Usage.InputTokens != 7 || final.Usage.OutputTokens != 3 || types[len(types)-1] != "response.completed" {
				t.Fatalf("bridged stream: events %v, final %s", types, final.RawJSON())
			}
			series := scrapeUntil(t, g, func(s map[string]float64) bool {
				return s["tollgate_tokens_total{backend=tgi,endpoint=resp,type=output}"] == 3
			})
			for _, ep := range []string{"chat", "resp"} {
				in := series["tollgate_tokens_total{backend=tgi,endpoint="+ep+",type=input}"]
				out := series["tollgate_tokens_total{backend=tgi,endpoint="+ep+",type=output}"]
				if in != 7 || out != 3 {
					t.Errorf("endpoint %s: tollgate_tokens_total input %v output %v; want 7 and 3, the usage the upstream sent before its stream was cut", ep, in, out)
				}
			}
			for k, v := range series {
				if strings.HasPrefix(k, "tollgate_stream_errors_total{") && strings.Contains(k, "endpoint=resp") && v != 0 {
					t.Errorf("%s %v: the bridged response was whole", k, v)
				}
			}
		})
	}
}
