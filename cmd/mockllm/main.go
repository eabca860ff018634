// Command mockllm is a fake LLM server for tests, demos and benchmarks: vLLM's OpenAI
// routes (or Anthropic's Messages API with --api anthropic) with deterministic
// answers, configurable latency and injected faults.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/tollgate/tollgate/providers/mockllm"
)

const usageHeader = `Usage: mockllm [flags]

Serves POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses,
/rerank, /v1/rerank, /v2/rerank, /score, /v1/score, /tokenize, /detokenize,
/v1/audio/transcriptions and /v1/audio/translations (multipart forms, as vLLM
serves Whisper; OpenAI's answers with x-mock-audio-api: openai), /v1/messages and /v1/messages/count_tokens (Anthropic's Messages API as vLLM's
router serves it: Authorization: Bearer, no anthropic-version, ids chatcmpl-,
no ping or [DONE] in a stream), GET /v1/models, /version, /health, /ping (GET and
POST, as /health), /load and /metrics like vLLM (or POST /v1/messages and /v1/messages/count_tokens like Anthropic with
--api anthropic); GET, DELETE
/v1/responses/{id} and GET /v1/responses/{id}/input_items serve the responses kept
in memory (--responses-store); POST /v1/responses/{id}/cancel refuses them (none
runs in the background). Answers are deterministic for
--seed, the request's seed and its prompt.

Per-request headers for tests:
  x-mock-status: 503        answer that status with an error body
  x-mock-retry-after: 2     with x-mock-status: send retry-after
  x-mock-delay: 200ms       wait before the response headers
  x-mock-ttft, x-mock-tpot  override --ttft and --tpot for this request
  x-mock-tokens: N          generate N tokens (max_tokens and --max-tokens still cut)
  x-mock-cut-after: N       stream: close the connection after N content chunks
  x-mock-error-after: N     /v1/messages stream: after N content deltas send
                            the mid-stream error event (Anthropic's
                            overloaded_error, vLLM's internal_error without
                            --api anthropic) and end the stream
  x-mock-garbage: 1         answer 200 with a body that is not JSON
  x-mock-audio-api: openai  the audio routes answer as OpenAI's API does
                            (gpt-4o-transcribe's token usage and events,
                            whisper-1's translations in every format)
  x-mock-cached-tokens: N   report N prompt tokens read from the prefix cache
                            (prompt_tokens_details.cached_tokens, /v1/responses:
                            input_tokens_details.cached_tokens; --api anthropic:
                            cache_read_input_tokens)
  x-mock-cache-write-tokens: N  --api anthropic: report N prompt tokens written to
                            the cache (cache_creation_input_tokens)
  x-mock-service-tier: T    --api anthropic: name tier T (priority, batch) in
                            usage.service_tier instead of standard; /v1/responses:
                            in service_tier instead of the request's (auto)
  x-mock-tool-calls: N      chat with function tools, one choice: answer N (1-16)
                            parallel tool calls (tool i in turn, arguments
                            {"n":i}), streamed one call after the other;
                            "N interleaved" streams the heads, then the
                            arguments' pieces by index in turn (0, 1, 0, 1)
  x-mock-tool-arguments: J  with x-mock-tool-calls: every call's arguments are
                            the JSON text J instead (streamed in two pieces)
Every API response carries x-mock-saw-authorization: yes|no. As vLLM's, an
answer's id is the request's X-Request-Id (else its body's request_id) after
chatcmpl-, cmpl-, embd-, rerank- or score-.

As vLLM: POST routes require Content-Type: application/json; /v1/completions
defaults max_tokens to 16, and without max_tokens an answer stops where
--max-model-len ends; n gives n choices; a stream's finish_reason rides on the
chunk of its last token; stream_options.continuous_usage_stats puts each choice's
usage on its chunks; logprobs (chat: logprobs, top_logprobs; completions: logprobs)
come with deterministic values; temperature, top_p, min_tokens and top_logprobs
are validated; ignore_eos runs an answer to max_tokens; min_tokens holds off stop
strings too (vLLM 0.10.2 and later); include_stop_str_in_output keeps the stop
string; completions' echo puts the prompt first (and its tokens first in logprobs),
and suffix is refused; dimensions may not exceed --embedding-dim; a request whose
client disconnects is aborted, and leaves the queue or frees its slot, at once.
/metrics has vLLM's gauges, counters and the time_to_first_token,
inter_token_latency and e2e_request_latency histograms.
As vLLM's guided decoding: chat's response_format json_schema makes the content
a JSON value of the schema (json_object: {}), and a tool_choice naming a
function (or "required": the first function tool) makes the answer that call,
its arguments an object of the function's parameters (finish_reason stop for a
named one, tool_calls for required); /v1/responses' text.format does the same
for its output text; max_tokens cuts the JSON like any text.
With --api anthropic, thinking (enabled with budget_tokens, or adaptive) puts a
thinking block with a signature first, and is validated as the Messages API does.
The request's model decides the rest as Anthropic documents it: claude-opus-4-7,
-4-8 and the Claude 5 models (those named here, and any other claude-<family>- of
major version 5 or later, as claude-opus-5-1 or claude-haiku-6, under their common
rules) refuse thinking budgets, non-default temperature,
top_p and top_k, and omit the thinking text unless thinking.display is
"summarized"; the 4.6 models and later refuse a prefill; output_config.effort xhigh
and max are checked per model; output_config.format (structured outputs, 4.5
models and later) makes the answer a JSON value of its schema, cut by max_tokens
like any text. The Claude 5 models think without a thinking field; claude-opus-5
and claude-haiku-5-5 take thinking disabled at effort high and below,
claude-sonnet-5 and the unnamed ones at any; claude-opus-5-5, claude-sonnet-5-5
(which has between_tools instead), claude-fable-5, claude-fable-5-1,
claude-mythos-5 and claude-mythos-5-1 refuse it; claude-opus-5-5,
claude-sonnet-5-5, claude-fable-5-1 and claude-mythos-5-1 refuse forced tool use,
claude-fable-5 and claude-mythos-5 answer it with the tool call alone.

Flags:
`

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	os.Exit(run(os.Args[1:], os.Stderr, sig, nil))
}

// run parses args and serves until a value arrives on stop. ready, when not nil,
// receives the listening address once the server accepts connections.
func run(args []string, stderr io.Writer, stop <-chan os.Signal, ready chan<- string) int {
	fs := flag.NewFlagSet("mockllm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageHeader)
		fs.PrintDefaults()
	}
	var o mockllm.Options
	listen := fs.String("listen", "127.0.0.1:8001", "address to listen on")
	fs.StringVar(&o.Model, "model", mockllm.DefaultModel, "served model name")
	fs.StringVar(&o.API, "api", mockllm.APIOpenAI, "API to speak: openai or anthropic")
	fs.DurationVar(&o.TTFT, "ttft", 0, "time to first token")
	fs.DurationVar(&o.TPOT, "tpot", 0, "time per output token")
	fs.IntVar(&o.MaxTokens, "max-tokens", mockllm.DefaultMaxTokens, "most tokens in an answer, x-mock-tokens included")
	fs.Float64Var(&o.ErrorRate, "error-rate", 0, "fraction of requests answered with a 500")
	fs.Float64Var(&o.DisconnectRate, "disconnect-rate", 0, "fraction of streams cut half-way")
	fs.Int64Var(&o.Seed, "seed", 1, "seed of the generated text and of the fault draws")
	fs.IntVar(&o.EmbeddingDim, "embedding-dim", mockllm.DefaultEmbeddingDim, "embedding vector length, the most dimensions a request may ask for")
	fs.IntVar(&o.MaxNumSeqs, "max-num-seqs", mockllm.DefaultMaxNumSeqs, "requests running at once; more wait (a waiting stream has its headers at once)")
	fs.IntVar(&o.MaxModelLen, "max-model-len", mockllm.DefaultMaxModelLen,
		"context length: reported by /v1/models; a prompt plus max_tokens beyond it is refused with 400; without max_tokens an answer stops there")
	fs.DurationVar(&o.KeepAliveTimeout, "keep-alive-timeout", mockllm.DefaultKeepAliveTimeout,
		"close keep-alive connections idle this long, as vLLM (uvicorn) does")
	fs.StringVar(&o.APIKey, "api-key", "", "required API key (Authorization: Bearer, or x-api-key for anthropic)")
	respStore := fs.Int("responses-store", mockllm.DefaultResponsesStore,
		"Responses API answers kept for previous_response_id and GET /v1/responses/{id}, oldest dropped first; 0 keeps none")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mockllm: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	switch {
	case *respStore < 0:
		fmt.Fprintln(stderr, "mockllm: responses-store: must not be negative")
		return 2
	case *respStore == 0:
		o.ResponsesStore = -1 // Options' zero is the default
	default:
		o.ResponsesStore = *respStore
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	srv, err := mockllm.New(o)
	if err != nil {
		log.Error("invalid flags", "err", err)
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Error("listen", "err", err)
		return 1
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("mockllm listening", "addr", ln.Addr().String(), "api", o.API, "model", o.Model,
		"ttft", o.TTFT.String(), "tpot", o.TPOT.String(), "max_tokens", o.MaxTokens,
		"error_rate", o.ErrorRate, "disconnect_rate", o.DisconnectRate, "seed", o.Seed,
		"keep_alive_timeout", o.KeepAliveTimeout.String(), "responses_store", max(o.ResponsesStore, 0), "auth", o.APIKey != "")
	if ready != nil {
		ready <- ln.Addr().String()
	}
	select {
	case s := <-stop:
		log.Info("shutting down", "signal", s.String())
	case err := <-served:
		log.Error("serve", "err", err)
		return 1
	}
	if err := srv.Shutdown(); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	if err := <-served; err != nil {
		log.Error("serve", "err", err)
		return 1
	}
	return 0
}
