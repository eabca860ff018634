package providers

import (
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
)

// benchBridgeBody is an Agents SDK turn of a tool loop: instructions, the history's
// messages, a function call and its output, two tools, a JSON schema format.
var benchBridgeBody = []byte(`{"model":"claude","instructions":"You are a weather assistant. Answer briefly.",` +
	`"input":[{"role":"user","content":"What is the weather in Paris and in Rome today?"},` +
	`{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Let me check both cities.","annotations":[]}]},` +
	`{"type":"function_call","call_id":"call_1","name":"get_weather","arguments":"{\"city\":\"Paris\"}"},` +
	`{"type":"function_call","call_id":"call_2","name":"get_weather","arguments":"{\"city\":\"Rome\"}"},` +
	`{"type":"function_call_output","call_id":"call_1","output":"18C and sunny"},` +
	`{"type":"function_call_output","call_id":"call_2","output":"24C, light clouds"}],` +
	`"tools":[{"type":"function","name":"get_weather","description":"Weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]},"strict":true},` +
	`{"type":"function","name":"get_time","parameters":{"type":"object","properties":{}}}],` +
	`"tool_choice":"auto","text":{"format":{"type":"json_schema","name":"report","schema":{"type":"object","properties":{"summary":{"type":"string"}}},"strict":true}},` +
	`"max_output_tokens":512,"temperature":0.3,"store":false,"stream":true,"prompt_cache_key":"weather-agent"}`)

var benchBridgeAnswerBody = []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"claude-sonnet-4-5",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":"Paris is at 18C and sunny; Rome is at 24C with light clouds.",` +
	`"reasoning_content":"Both cities answered.","tool_calls":null},"logprobs":null,"finish_reason":"stop"}],` +
	`"usage":{"prompt_tokens":412,"completion_tokens":38,"total_tokens":450,"prompt_tokens_details":{"cached_tokens":256}}}`)

// BenchmarkBridgeRequest is the translation of a Responses API call into a chat call.
func BenchmarkBridgeRequest(b *testing.B) {
	model := quoteModel("claude")
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchBridgeBody)))
	for b.Loop() {
		var r respRequest
		buf, _, _, _ = appendBridgeRequest(buf[:0], benchBridgeBody, &r, model, true, true)
	}
}

// BenchmarkBridgeAnswer is the translation of a chat completion into the response
// object, the request's echo included.
func BenchmarkBridgeAnswer(b *testing.B) {
	var r respRequest
	_ = r.read(benchBridgeBody)
	buf := make([]byte, 0, 8192)
	model := quoteModel("claude")
	u := Usage{Input: 412, Output: 38, CachedInput: 256}
	b.ReportAllocs()
	for b.Loop() {
		e := bridgeEchoPool.Get().(*bridgeEcho)
		e.render(&r)
		buf, _ = appendBridgeAnswer(buf[:0], benchBridgeAnswerBody, e, model, &u)
		e.release()
	}
}

// benchDeltas is a chat stream of 32 text deltas, its finish and usage chunks.
func benchDeltas() *chunkEvents {
	data := []string{delta(`{"role":"assistant","content":""}`, "")}
	for i := 0; i < 32; i++ {
		data = append(data, delta(`{"content":" word"}`, ""))
	}
	data = append(data, delta(`{}`, "stop"), usageChunk, "[DONE]")
	return newChunkEvents(data...)
}

// runBridgeStream reads one whole bridged stream of in's chunks, as the gateway does,
// and returns the events it yielded.
func runBridgeStream(tb testing.TB, in *chunkEvents, r *respRequest) int {
	in.i = 0
	s := acquireBridgeStream()
	s.in = in
	s.echo.render(r)
	s.model = append(s.model[:0], `"claude"`...)
	n := 0
	var ev Event
	for {
		if err := s.Next(&ev); err != nil {
			tb.Fatal(err)
		}
		n++
		if ev.Done {
			break
		}
	}
	_ = s.Close()
	return n
}

// benchInterleavedDeltas is a chat stream of four parallel tool calls interleaved by
// index, as some OpenAI-compatible servers stream them: the four heads, then each
// call's arguments in four pieces in turn (0, 1, 2, 3, 0, 1, …), the finish and usage
// chunks.
func benchInterleavedDeltas() *chunkEvents {
	data := []string{delta(`{"role":"assistant","content":""}`, "")}
	for i := range 4 {
		data = append(data, delta(`{"tool_calls":[{"index":`+strconv.Itoa(i)+`,"id":"call_`+strconv.Itoa(i)+
			`","type":"function","function":{"name":"get_weather","arguments":""}}]}`, ""))
	}
	for _, piece := range []string{`{\"city\":`, `\"Par`, `is\",\"days\":`, `3}`} {
		for i := range 4 {
			data = append(data, delta(`{"tool_calls":[{"index":`+strconv.Itoa(i)+`,"function":{"arguments":"`+piece+`"}}]}`, ""))
		}
	}
	data = append(data, delta(`{}`, "tool_calls"), usageChunk, "[DONE]")
	return newChunkEvents(data...)
}

// BenchmarkBridgeStreamInterleaved is one whole stream of benchInterleavedDeltas
// turned into the Responses API's events (32 with its end): ns/event is the cost of one.
func BenchmarkBridgeStreamInterleaved(b *testing.B) {
	var r respRequest
	_ = r.read(benchBridgeBody)
	in := benchInterleavedDeltas()
	events := runBridgeStream(b, in, &r)
	b.ReportAllocs()
	for b.Loop() {
		runBridgeStream(b, in, &r)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events), "ns/event")
}

// BenchmarkBridgeStream is one whole stream of 32 deltas turned into the Responses
// API's events (41 with its end): ns/event is the cost of one.
func BenchmarkBridgeStream(b *testing.B) {
	var r respRequest
	_ = r.read(benchBridgeBody)
	in := benchDeltas()
	events := runBridgeStream(b, in, &r)
	b.ReportAllocs()
	for b.Loop() {
		runBridgeStream(b, in, &r)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events), "ns/event")
}

// benchThinkingBlocks are a Claude turn's thinking blocks as the Anthropic translation
// answers them: a signed thinking block and a redacted one.
const benchThinkingBlocks = `[{"type":"thinking","thinking":"The user wants the weather in Paris and Rome: call get_weather for each.",` +
	`"signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYdsEqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"},` +
	`{"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7vB5URj"}]`

// benchBridgeThinkingBody is benchBridgeBody's tool loop with the reasoning item the
// bridge answered before the calls, its thinking blocks in encrypted_content.
var benchBridgeThinkingBody = []byte(strings.Replace(string(benchBridgeBody), `{"type":"message","role":"assistant"`,
	`{"type":"reasoning","id":"rs_1","summary":[],"content":[{"type":"reasoning_text","text":"The user wants the weather."}],"encrypted_content":"`+
		base64.StdEncoding.EncodeToString([]byte(benchThinkingBlocks))+`"},{"type":"message","role":"assistant"`, 1))

// benchBridgeThinkingAnswerBody is a Claude answer with thinking and tool calls, as the
// Anthropic translation gives it.
var benchBridgeThinkingAnswerBody = []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"claude-sonnet-4-5",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":"Let me check both cities.",` +
	`"reasoning_content":"The user wants the weather in Paris and Rome: call get_weather for each.","thinking_blocks":` + benchThinkingBlocks + `,` +
	`"tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},` +
	`{"id":"toolu_2","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Rome\"}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],` +
	`"usage":{"prompt_tokens":412,"completion_tokens":96,"total_tokens":508}}`)

// BenchmarkBridgeRequestThinking is the translation of a tool loop's turn whose
// reasoning item carries thinking blocks back.
func BenchmarkBridgeRequestThinking(b *testing.B) {
	model := quoteModel("claude")
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchBridgeThinkingBody)))
	for b.Loop() {
		var r respRequest
		buf, _, _, _ = appendBridgeRequest(buf[:0], benchBridgeThinkingBody, &r, model, true, true)
	}
}

// BenchmarkBridgeAnswerThinking is the translation of a chat completion with thinking
// blocks, which go into the reasoning item's encrypted_content.
func BenchmarkBridgeAnswerThinking(b *testing.B) {
	var r respRequest
	_ = r.read(benchBridgeBody)
	buf := make([]byte, 0, 8192)
	model := quoteModel("claude")
	u := Usage{Input: 412, Output: 96}
	b.ReportAllocs()
	for b.Loop() {
		e := bridgeEchoPool.Get().(*bridgeEcho)
		e.render(&r)
		buf, _ = appendBridgeAnswer(buf[:0], benchBridgeThinkingAnswerBody, e, model, &u)
		e.release()
	}
}

// benchThinkingDeltas is a Claude stream as the Anthropic translation gives it: 16
// reasoning deltas, the thinking_blocks delta, a tool call, the finish and usage
// chunks, and the upstream's cut after them.
func benchThinkingDeltas() *chunkEvents {
	data := []string{delta(`{"role":"assistant","content":""}`, "")}
	for i := 0; i < 16; i++ {
		data = append(data, delta(`{"reasoning_content":" word"}`, ""))
	}
	data = append(data, delta(`{"thinking_blocks":`+benchThinkingBlocks+`}`, ""),
		delta(`{"tool_calls":[{"index":0,"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":""}}]}`, ""),
		delta(`{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":\"Paris\"}"}}]}`, ""),
		delta(`{}`, "tool_calls"), usageChunk, "!cut")
	return newChunkEvents(data...)
}

// BenchmarkBridgeStreamThinking is one whole stream of benchThinkingDeltas turned into
// the Responses API's events.
func BenchmarkBridgeStreamThinking(b *testing.B) {
	var r respRequest
	_ = r.read(benchBridgeBody)
	in := benchThinkingDeltas()
	events := runBridgeStream(b, in, &r)
	b.ReportAllocs()
	for b.Loop() {
		runBridgeStream(b, in, &r)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events), "ns/event")
}
