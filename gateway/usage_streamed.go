package gateway

// streamedUsage gives a stream cut after its first tokens, before its usage came (the
// usage comes last), or one whose upstream sent none, the usage of what it streamed, as LiteLLM and OpenAI's own billing
// count a stream stopped midway, rather than leaving its whole estimate (max_tokens,
// 32000 for Claude Code, whose users stop answers all the time) charged. Best first:
//   - the usage the stream reported so far (vLLM's continuous_usage_stats on every
//     chunk, through the Messages API bridge too): exact, prompt and output so far;
//   - the prompt's tokens the stream began with (Anthropic's message_start), else the
//     prompt as admission estimated it (promptEstimate); and the output as the text of
//     the events relayed, at about 4 bytes a token, rounded up, at least 1, never
//     taking the total past the estimate admission charged (estTokens).
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
	r.usageEst = true
	if so.Input > 0 {
		u.Input, u.CachedInput, u.CacheWrite, u.CacheWrite1h = so.Input, so.CachedInput, so.CacheWrite, so.CacheWrite1h
	} else {
		u.Input = r.promptEstimate()
	}
	out := max((r.outBytes+3)/4, 1)
	if r.estTokens > 0 {
		out = min(out, max(r.estTokens-u.Input, 0))
	}
	u.Output = out
}
