package gateway

import (
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/providers"
	"github.com/tollgate/tollgate/router"
)

// errKindContext is the access log's error of a request whose last answer was a
// context-window refusal.
const errKindContext = "context_length_exceeded"

// contextWindowExceeded reports whether the upstream's error answer in ctx.Response
// says the request does not fit its model's context window; if so the answer is
// rewritten as OpenAI's (400, code context_length_exceeded), which the client gets
// should no context fallback serve. Only asked on an endpoint with context_fallbacks:
// an answer to any other request, or any other 400, is passed on as the upstream
// wrote it.
func (r *request) contextWindowExceeded(ctx *fasthttp.RequestCtx) bool {
	if !providers.AnswerContextWindowExceeded(&ctx.Response) {
		return false
	}
	if r.anthropicAPI {
		// Rewritten as OpenAI's: a Messages API client reads its own API's shape.
		providers.AnthropicErrorShape(&ctx.Response, r.reqID)
	}
	r.errKind = errKindContext
	return true
}

// toContextFallbacks turns the request, whose attempt on the plan's target ti was
// refused for the context window, to the context fallbacks it has not tried. From the
// route and its fallbacks, the plan's targets become every context fallback but the
// backends tried up to ti (those skipped for having no target in service included), in
// order, for the send loop to start over on with the endpoint's retries; the refusal
// is kept (keepAnswer), for a context fallback that cannot take the call to leave it
// standing, and ctx.Response emptied for the next attempt. From a context fallback,
// the plan stays and the loop goes on to the next target, as to a next fallback (the
// loop keeps the answer then). It reports false when none is left, the request's
// deadline has passed (a fallback could only time out), or the request continues a
// stored response (previous_response_id: only the backend that stored it holds the
// conversation, and another would answer that it knows no such response); the
// context-window answer then stands.
func (r *request) toContextFallbacks(ctx *fasthttp.RequestCtx, ti int) bool {
	p := &r.plan
	if r.pin.b != nil || !r.call.Deadline.IsZero() && !time.Now().Before(r.call.Deadline) {
		return false
	}
	if r.ctxPhase {
		return ti+1 < len(p.Targets)
	}
	tried := p.Targets[:ti+1]
	r.ctxTargets = r.ctxTargets[:0]
	for _, t := range p.ContextTargets {
		if !planned(tried, t.Backend) {
			r.ctxTargets = append(r.ctxTargets, t)
		}
	}
	if len(r.ctxTargets) == 0 {
		return false
	}
	r.ctxPhase = true
	p.Targets = r.ctxTargets
	r.keepAnswer(&ctx.Response)
	ctx.Response.Reset()
	return true
}

// planned reports whether backend is one of ts's.
func planned(ts []router.Target, backend int) bool {
	for i := range ts {
		if ts[i].Backend == backend {
			return true
		}
	}
	return false
}

// pinContext puts the context fallback whose backend is bi, if the endpoint has one,
// before the plan's targets in r.pinTargets, for a Responses call continuing a
// response that context fallback stored (pinPlan); it reports whether it did.
func (r *request) pinContext(bi int) bool {
	p := &r.plan
	for _, t := range p.ContextTargets {
		if t.Backend == bi {
			r.pinTargets = append(append(r.pinTargets[:0], t), p.Targets...)
			return true
		}
	}
	return false
}
