package gateway

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// answersSeen is tollgate_requests_total of endpoint with status code: the attempts
// the gateway answered so.
func answersSeen(t *testing.T, g *gw, endpoint string, code int) float64 {
	t.Helper()
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	v, _ := promtest.Sum(fams, "tollgate_requests_total", func(l map[string]string) bool {
		return l["endpoint"] == endpoint && l["code"] == strconv.Itoa(code)
	})
	return v
}

// The official SDKs with their default retries (two), against the gateway's limits:
// a refusal whose room comes back only far later (a day's requests spent, an hourly
// rate's refill of 90 s, which openai-go would have waited out and anthropic-sdk-go
// would have slept through the day for) is one attempt, its error returned at once;
// a requests-per-second limit's is retried after its retry-after-ms, well under the
// second retry-after alone made the SDK wait, and gets through.
// Redis gets a timeout no loaded test machine reaches: past the default 50ms a check
// is answered from the replica's share and a true-up sent after a timeout is dropped
// (README), which is not what this checks.
// Not t.Parallel: the per-second retry must come back within 900 ms.
func TestSDKRetriesOnLimitRefusals(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testSDKRetriesOnLimitRefusals(t, "") })
	t.Run("redis", func(t *testing.T) {
		rds := redistest.Start(t)
		testSDKRetriesOnLimitRefusals(t, `limiter: {store: redis, redis: {url: "`+rds.URL()+`"}, timeout: 5s}
`)
	})
}

func testSDKRetriesOnLimitRefusals(t *testing.T, limiterYAML string) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, retryLimitsConfig(addr, limiterYAML))
	ctx := context.Background()
	// The SDK's defaults: two retries.
	c := openai.NewClient(option.WithBaseURL(g.url+"/v1"), option.WithAPIKey("sk-retry"))
	chat := func(model string) error {
		_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model, Messages: userMsg("hi"), MaxTokens: openai.Int(4)})
		return err
	}
	for _, model := range []string{"daily", "hourly"} {
		t.Run(model, func(t *testing.T) {
			if err := chat(model); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			err := chat(model)
			took := time.Since(start)
			if e := apiErr(t, err); e.StatusCode != 429 {
				t.Fatalf("status %d, want 429", e.StatusCode)
			}
			// Counted once answered, which the client may see first; the SDK has
			// returned, so no attempt is still to come.
			waitFor(t, func() bool { return answersSeen(t, g, model, 429) >= 1 })
			if n := answersSeen(t, g, model, 429); n != 1 {
				t.Errorf("the gateway saw %v refused attempts, want 1", n)
			}
			if took > 3*time.Second {
				t.Errorf("the refusal took %v to come back, want at once", took)
			}
		})
	}
	t.Run("per second", func(t *testing.T) {
		if err := chat("per-second"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := chat("per-second"); err != nil {
			t.Fatalf("the SDK's retry did not get through: %v", err)
		}
		took := time.Since(start)
		waitFor(t, func() bool { return answersSeen(t, g, "per-second", 200) >= 2 })
		if refused, served := answersSeen(t, g, "per-second", 429), answersSeen(t, g, "per-second", 200); refused != 1 || served != 2 {
			t.Errorf("the gateway answered %v × 429 and %v × 200, want the second call refused once, then served", refused, served)
		}
		// The limit's room comes back within 100 ms; retry-after alone (1 s) made
		// the SDK wait a whole second.
		if took >= 900*time.Millisecond {
			t.Errorf("the retried call took %v, want under the 1 s retry-after alone asked for", took)
		}
	})
	t.Run("messages API", func(t *testing.T) {
		// The day's request, spent above; anthropic-sdk-go waits out any
		// retry-after, a day's included, unless told not to retry.
		ac := anthropic.NewClient(aoption.WithBaseURL(g.url), aoption.WithAPIKey("sk-retry"))
		before := answersSeen(t, g, "daily", 429)
		start := time.Now()
		_, err := ac.Messages.New(ctx, msgParams("daily", "hi", 4))
		took := time.Since(start)
		var e *anthropic.Error
		if !errors.As(err, &e) || e.StatusCode != 429 {
			t.Fatalf("err %v, want a 429", err)
		}
		waitFor(t, func() bool { return answersSeen(t, g, "daily", 429) >= before+1 })
		if n := answersSeen(t, g, "daily", 429) - before; n != 1 || took > 3*time.Second {
			t.Errorf("%v attempts in %v, want 1 at once", n, took)
		}
	})
}

// An upstream answer over the backend's max_response_bytes is a 502 the SDKs would
// retry, each retry having the upstream generate as large an answer again (an
// embeddings batch exactly as large): it says x-should-retry: false, and the SDK's
// call is one attempt. A 502 for an upstream that could not be reached says nothing:
// the SDKs' retry a second later may find it back.
func TestShouldRetryOnGatewayErrors(t *testing.T) {
	t.Run("answer over max_response_bytes", func(t *testing.T) {
		up, _ := floatEmbeddingsUpstream(t)
		g := startGateway(t, embedConfig(up.URL, "max_response_bytes: 1MiB"))
		resp, b := retryPost(t, g, "/v1/embeddings", string(embeddingsRequest(64)))
		if resp.StatusCode != 502 || !strings.Contains(b, `"code":"upstream_bad_response"`) {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		if got := resp.Header.Values("X-Should-Retry"); len(got) != 1 || got[0] != "false" {
			t.Errorf("x-should-retry %q, want false", got)
		}
		inputs := make([]string, 64)
		for i := range inputs {
			inputs[i] = "document number " + strconv.Itoa(i)
		}
		c := openai.NewClient(option.WithBaseURL(g.url+"/v1"), option.WithAPIKey("unused"))
		_, err := c.Embeddings.New(context.Background(), openai.EmbeddingNewParams{
			Model: "embed", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: inputs},
		})
		if e := apiErr(t, err); e.StatusCode != 502 {
			t.Fatalf("status %d, want 502", e.StatusCode)
		}
		waitFor(t, func() bool { return answersSeen(t, g, "embed", 502) >= 2 })
		if n := answersSeen(t, g, "embed", 502); n != 2 {
			t.Errorf("the gateway answered 502 %v times, want 2: the request above and the SDK's one attempt", n)
		}
	})
	t.Run("upstream unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		g := startGateway(t, mockConfig(addr, "", "")+"logging: {level: error, access_log: false}\n")
		resp, b := retryPost(t, g, "/v1/chat/completions", retryChat("chat"))
		if resp.StatusCode != 502 || !strings.Contains(b, `"code":"upstream_unreachable"`) {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		if got := resp.Header.Values("X-Should-Retry"); len(got) != 0 {
			t.Errorf("x-should-retry %q, want none", got)
		}
	})
}
