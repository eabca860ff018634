package gateway

import "github.com/tollgate/tollgate/providers"

// streamedUsage gives a stream cut after its first tokens, before its usage came (the
// usage comes last), or one whose upstream sent none, the usage of what it streamed, as LiteLLM and OpenAI's own billing
// count a stream stopped midway, rather than leaving its whole estimate (max_tokens,
// 32000 for Claude Code, whose users stop answers all the time) charged. Best first:
//   - the usage the stream reported so far (vLLM's continuous_usage_stats on every
//     chunk, through the Messages API bridge too): exact, prompt and output so far;
//   - the prompt's tokens the stream began with (Anthropic's message_start), else the
//     prompt as admission estimated it (promptEstimate); and the output as the text of
//     the events relayed (estimateOutput).
//
// An upstream count of the whole request, a stream cut before its first token, and
// a call that generates nothing the gateway can size (an audio API's, priced by its
// duration) are left as they are: record keeps or refunds the estimate as before.
func (r *request) streamedUsage() {
	if r.ttft == 0 || r.usage.Counted() || r.f.completions(r.call.Kind) == 0 {
		return
	}
	u := &r.usage
	so := &r.soFar
	if so.Input > 0 && so.Output > 0 {
		u.Input, u.Output, u.CachedInput, u.CacheWrite, u.CacheWrite1h = so.Input, so.Output, so.CachedInput, so.CacheWrite, so.CacheWrite1h
		return
	}
	if so.Input > 0 {
		u.Input, u.CachedInput, u.CacheWrite, u.CacheWrite1h = so.Input, so.CachedInput, so.CacheWrite, so.CacheWrite1h
	} else {
		u.Input = r.promptEstimate()
	}
	r.estimateOutput()
}

// answeredUsage gives an answer that did not stream and came without usage (some
// OpenAI-compatible servers send none) the usage of what it answered, as a stream
// without usage gets (streamedUsage): the prompt as admission estimated it, and the
// output as the generated text the provider found in it (providers.Result.OutputBytes:
// content, reasoning, a refusal, tool call arguments; a response's output text; a
// message's text, thinking and tool input), rather than leaving its whole estimate
// charged while the metrics and the access log count nothing. An answer whose usage
// came but held no believable count, a background response whose work is still to
// come, and the calls no token count settles (an audio API's, priced by its duration;
// a tokenizer call's, charged nothing) keep the estimate (record). An embeddings
// call, a rerank or a score generates nothing: its prompt's estimate is its usage,
// output none.
func (r *request) answeredUsage() {
	if !r.res.NoUsage || r.usage.Counted() {
		return
	}
	switch r.call.Kind {
	case providers.Embeddings, providers.Rerank, providers.Score:
		r.usage.Input, r.usageEst = r.promptEstimate(), true
		return
	}
	if r.f.completions(r.call.Kind) == 0 {
		return
	}
	r.outBytes = int64(r.res.OutputBytes)
	r.usage.Input = r.promptEstimate()
	r.estimateOutput()
}

// estimateOutput sets the output of usage, whose input is set, to the generated text
// of outBytes at about 4 bytes a token, rounded up, at least 1, never taking the total
// past the estimate admission charged (estTokens), and marks the usage the gateway's
// estimate.
func (r *request) estimateOutput() {
	r.usageEst = true
	out := max((r.outBytes+3)/4, 1)
	if r.estTokens > 0 {
		out = min(out, max(r.estTokens-r.usage.Input, 0))
	}
	r.usage.Output = out
}
