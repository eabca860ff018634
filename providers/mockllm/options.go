package mockllm

import (
	"errors"
	"strconv"
	"time"
)

// API values for Options.API.
const (
	APIOpenAI    = "openai"
	APIAnthropic = "anthropic"
)

// Options configures a server; cmd/mockllm exposes each field as a flag.
type Options struct {
	// Model is the one served model name; requests naming another get vLLM's 404.
	Model string
	// API is "openai" (vLLM's OpenAI server, the default) or "anthropic" (the Messages API).
	API string
	// TTFT is the time to the first token; TPOT the time between output tokens.
	TTFT, TPOT time.Duration
	// MaxTokens caps every answer (default 64), x-mock-tokens included; a request's
	// max_tokens cuts it further. An answer it cuts ends with finish_reason "length".
	MaxTokens int
	// ErrorRate is the fraction of valid requests answered with a 500.
	ErrorRate float64
	// DisconnectRate is the fraction of streams cut half-way, without their end.
	DisconnectRate float64
	// Seed makes the generated text, and the fault draws, reproducible.
	Seed int64
	// EmbeddingDim is the embedding vector length (default 16).
	EmbeddingDim int
	// MaxNumSeqs is how many requests run at once (default 256); the rest wait, as in
	// vLLM's scheduler, and show in vllm:num_requests_waiting. A waiting stream has
	// its 200 and headers at once, as from vLLM.
	MaxNumSeqs int
	// MaxModelLen is the context length (default 8192): reported by /v1/models and
	// /tokenize, and, as in vLLM, a chat or completions request whose prompt plus
	// max_tokens exceeds it, or an embeddings input longer than it, is refused with
	// 400; without max_tokens an answer stops where the context ends. Prompts count
	// about four bytes a token.
	MaxModelLen int
	// KeepAliveTimeout is how long a keep-alive connection may stay idle between two
	// requests before the server closes it (default 5s, uvicorn's
	// timeout_keep_alive, which vLLM's API server runs with).
	KeepAliveTimeout time.Duration
	// ResponsesStore is how many Responses API answers (POST /v1/responses with store
	// true, the default) the server keeps in memory, as vLLM does, for
	// previous_response_id and GET, DELETE /v1/responses/{id} (and its input_items);
	// the oldest is dropped first. Zero means DefaultResponsesStore; a negative value
	// keeps none.
	ResponsesStore int
	// APIKey, when set, is required as "Authorization: Bearer KEY" (openai) or
	// "x-api-key: KEY" (anthropic).
	APIKey string
	// Now is the clock for the "created" fields and for the time a request waits for
	// a MaxNumSeqs slot, which the latency histograms of /metrics count; nil means
	// time.Now.
	Now func() time.Time
	// Sleep waits out the simulated latencies; nil means a timer that Shutdown cuts
	// short. Tests pass a recorder to check the schedule without waiting.
	Sleep func(time.Duration)
}

// Defaults used for zero Options fields.
const (
	DefaultModel        = "mock-1"
	DefaultMaxTokens    = 64
	DefaultEmbeddingDim = 16
	DefaultMaxNumSeqs   = 256
	DefaultMaxModelLen  = 8192
	// DefaultKeepAliveTimeout is uvicorn's timeout_keep_alive default.
	DefaultKeepAliveTimeout = 5 * time.Second
	DefaultResponsesStore   = 10000
)

// MaxEmbeddingDim is the largest EmbeddingDim: it bounds per-request vector work and
// response size.
const MaxEmbeddingDim = 65536

// withDefaults fills zero fields and reports every invalid value.
func (o Options) withDefaults() (Options, error) {
	if o.Model == "" {
		o.Model = DefaultModel
	}
	if o.API == "" {
		o.API = APIOpenAI
	}
	if o.MaxTokens == 0 {
		o.MaxTokens = DefaultMaxTokens
	}
	if o.EmbeddingDim == 0 {
		o.EmbeddingDim = DefaultEmbeddingDim
	}
	if o.MaxNumSeqs == 0 {
		o.MaxNumSeqs = DefaultMaxNumSeqs
	}
	if o.MaxModelLen == 0 {
		o.MaxModelLen = DefaultMaxModelLen
	}
	if o.KeepAliveTimeout == 0 {
		o.KeepAliveTimeout = DefaultKeepAliveTimeout
	}
	if o.ResponsesStore == 0 {
		o.ResponsesStore = DefaultResponsesStore
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	var errs []error
	if o.API != APIOpenAI && o.API != APIAnthropic {
		errs = append(errs, errors.New("api: must be openai or anthropic, not "+strconv.Quote(o.API)))
	}
	if o.TTFT < 0 || o.TPOT < 0 {
		errs = append(errs, errors.New("ttft, tpot: must not be negative"))
	}
	if o.MaxTokens < 0 {
		errs = append(errs, errors.New("max-tokens: must be positive"))
	}
	if !(o.ErrorRate >= 0 && o.ErrorRate <= 1) {
		errs = append(errs, errors.New("error-rate: must be between 0 and 1"))
	}
	if !(o.DisconnectRate >= 0 && o.DisconnectRate <= 1) {
		errs = append(errs, errors.New("disconnect-rate: must be between 0 and 1"))
	}
	if o.EmbeddingDim < 0 || o.EmbeddingDim > MaxEmbeddingDim {
		errs = append(errs, errors.New("embedding-dim: must be between 1 and "+strconv.Itoa(MaxEmbeddingDim)))
	}
	if o.MaxNumSeqs < 0 {
		errs = append(errs, errors.New("max-num-seqs: must be positive"))
	}
	if o.KeepAliveTimeout < 0 {
		errs = append(errs, errors.New("keep-alive-timeout: must not be negative"))
	}
	if o.MaxModelLen < 0 {
		errs = append(errs, errors.New("max-model-len: must be positive"))
	}
	return o, errors.Join(errs...)
}
