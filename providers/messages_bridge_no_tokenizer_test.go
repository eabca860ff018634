package providers

import (
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// An upstream found without vLLM's tokenizer (its /tokenize answered 404, 405, 422 or
// a 2xx without a count) is not asked again for noTokenizerFor: the counts meanwhile
// are refused as errBridgeNoTokenizer without an upstream (Result.Sent zero, as the
// gateway reads a refusal the backend makes itself), and the first count after it is
// asked again. A count the translation refuses is refused so all the same, and an
// upstream's other failures (a 503, a 400 of vLLM's) are no sign of a missing
// tokenizer: the next count asks again. A backend a reload builds starts over.
func TestMessagesBridgeNoTokenizerRemembered(t *testing.T) {
	var tokenize atomic.Int64
	var status atomic.Int64
	var answer atomic.Value
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/tokenize" {
			tokenize.Add(1)
		}
		ctx.SetContentType("application/json")
		ctx.SetStatusCode(int(status.Load()))
		ctx.SetBodyString(answer.Load().(string))
	})
	clk := newFakeClock()
	ps := poolsWithClock(clk)
	cfg := Config{BaseURL: up.URL + "/v1", Model: "qwen", MessagesAPI: MessagesChat}
	const body = `{"model":"coder","messages":[{"role":"user","content":"How many tokens?"}]}`
	count := func(b *Backend, body string) (*Result, error) {
		t.Helper()
		var out fasthttp.Response
		var res Result
		err := b.Send(messagesCall(CountTokens, body), &out, &res)
		return &res, err
	}
	answers := func(st int, ans string) { status.Store(int64(st)); answer.Store(ans) }
	noTokenizer := func(t *testing.T, err error) {
		t.Helper()
		if ue, ok := errors.AsType[*UnsupportedError](err); !ok || ue != errBridgeNoTokenizer {
			t.Fatalf("error %v, want errBridgeNoTokenizer", err)
		}
	}

	for _, tc := range []struct {
		name   string
		status int
		answer string
	}{
		{"no route", 404, `{"detail":"Not Found"}`},
		{"no POST", 405, `{"detail":"Method Not Allowed"}`},
		{"TGI's own tokenize", 422, `missing field inputs`},
		{"another tokenizer's answer", 200, `{"tokens":[]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newPoolBackend(t, cfg, ps)
			answers(tc.status, tc.answer)
			before := tokenize.Load()
			res, err := count(b, body)
			noTokenizer(t, err)
			if res.Sent.IsZero() || tokenize.Load()-before != 1 {
				t.Fatalf("the first count was not asked of the upstream (sent %v, %d asked)", res.Sent, tokenize.Load()-before)
			}
			// The upstream would count now: it is not asked while the answer holds.
			answers(200, `{"count":5,"max_model_len":8192,"tokens":[1,2,3,4,5]}`)
			for range 3 {
				res, err := count(b, body)
				noTokenizer(t, err)
				if !res.Sent.IsZero() || res.Status != 0 {
					t.Errorf("result %+v: refused without an upstream", res)
				}
			}
			clk.Advance(noTokenizerFor - time.Second)
			_, err = count(b, body)
			noTokenizer(t, err)
			if got := tokenize.Load() - before; got != 1 {
				t.Fatalf("the upstream was asked %d times within %v, want once", got, noTokenizerFor)
			}
			// A count the translation refuses is refused for what it holds, as when
			// the upstream is asked.
			if _, err := count(b, `{"model":"coder","messages":[]}`); !errors.As(err, new(*RequestError)) {
				t.Errorf("a count the translation refuses: %v", err)
			}
			clk.Advance(time.Second)
			if _, err := count(b, body); err != nil {
				t.Fatalf("after %v: %v", noTokenizerFor, err)
			}
			if got := tokenize.Load() - before; got != 2 {
				t.Errorf("the upstream was asked %d times, want again after %v", got, noTokenizerFor)
			}

			// A backend built anew (a reload) asks at once.
			answers(tc.status, tc.answer)
			_, err = count(b, body)
			noTokenizer(t, err)
			answers(200, `{"count":5,"max_model_len":8192,"tokens":[1,2,3,4,5]}`)
			if _, err := count(newPoolBackend(t, cfg, ps), body); err != nil {
				t.Errorf("a backend built anew: %v", err)
			}
			if got := tokenize.Load() - before; got != 4 {
				t.Errorf("the upstream was asked %d times, want 4", got)
			}
		})
	}

	t.Run("other upstream errors", func(t *testing.T) {
		b := newPoolBackend(t, cfg, ps)
		for _, st := range []int{503, 400} {
			answers(st, `{"error":{"message":"not now","type":"BadRequestError","code":`+strconv.Itoa(st)+`}}`)
			before := tokenize.Load()
			if _, err := count(b, body); !errors.As(err, new(*UpstreamError)) {
				t.Fatalf("%d: %v", st, err)
			}
			answers(200, `{"count":5,"max_model_len":8192,"tokens":[1,2,3,4,5]}`)
			if _, err := count(b, body); err != nil {
				t.Errorf("the count after a %d: %v", st, err)
			}
			if got := tokenize.Load() - before; got != 2 {
				t.Errorf("after a %d the upstream was asked %d times, want 2", st, got)
			}
		}
	})
}
