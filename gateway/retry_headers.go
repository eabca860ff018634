package gateway

import (
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/limiter"
)

// The official SDKs (OpenAI's and Anthropic's, for Go and Node) retry 408, 409, 429
// and 5xx twice by default, unless the answer carries x-should-retry, which wins.
// Before a retry they wait retry-after-ms, read first, or retry-after, when it is
// within their bound, else a backoff of their own (0.5 s, then 1 s, at most 8 s). The
// bounds differ: openai-go (v3.96) waits up to 2 minutes and stops retrying past that;
// the openai Node SDK waits under 60 s in v4 (4.104) and any wait in v6 (6.49);
// anthropic-sdk-go (v2.17) any wait, @anthropic-ai/sdk (1.17) any up to 2^31-1 ms (a
// day budget's 429 holds their call for the rest of the day). A refusal whose room comes back
// later than all of them wait as told is thus either retried after a second and
// refused again, the retries counting as requests, or holds its caller for minutes to
// hours: the gateway says x-should-retry: false for it.
var (
	hdrRetryAfterMs = []byte("Retry-After-Ms")
	hdrShouldRetry  = []byte("X-Should-Retry")
	strTrue         = []byte("true")
)

// sdkWaitMs is the first retry-after-ms the SDKs do not all wait out as told: the
// openai Node SDK's v4 takes a wait under 60 s only.
const sdkWaitMs = 60_000

// setWait writes a refusal's wait d, rounded up, as retry-after in seconds and
// retry-after-ms in milliseconds (each at least 1), and reports whether every
// official SDK waits it out as told (retry-after-ms under sdkWaitMs).
func (r *request) setWait(h *fasthttp.ResponseHeader, d time.Duration) (within bool) {
	h.SetBytesKV(hdrRetryAfter, limiter.AppendRetryAfter(r.out[:0], d))
	ms := limiter.RetryAfterMs(d)
	h.SetBytesKV(hdrRetryAfterMs, appendInt(r.out[:0], ms))
	return ms < sdkWaitMs
}

// setShouldRetry writes x-should-retry.
func setShouldRetry(h *fasthttp.ResponseHeader, retry bool) {
	v := strFalse
	if retry {
		v = strTrue
	}
	h.SetBytesKV(hdrShouldRetry, v)
}

// sdkRetries reports whether the official SDKs retry an answer of status when it
// carries no x-should-retry.
func sdkRetries(status int) bool {
	return status == fasthttp.StatusRequestTimeout || status == fasthttp.StatusConflict ||
		status == fasthttp.StatusTooManyRequests || status >= fasthttp.StatusInternalServerError
}
