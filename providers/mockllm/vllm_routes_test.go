package mockllm

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// vLLM's AuthenticationMiddleware (vllm/entrypoints/openai/api_server.py,
// AuthenticationMiddleware.verify_token) splits the Authorization header at its first
// space and compares the scheme case-insensitively (`scheme.lower() != "bearer"`), as
// RFC 9110 section 11.1 says auth schemes are; only the token is compared exactly.
func TestBearerSchemeAnyCase(t *testing.T) {
	h := start(t, Options{APIKey: "sk-test"})
	for _, auth := range []string{"bearer sk-test", "BEARER sk-test"} {
		resp, body := h.must("POST", "/v1/chat/completions", chatBody("hi", `"max_tokens":2`), "Authorization", auth)
		if resp.StatusCode != 200 {
			t.Errorf("Authorization: %q: status %d %s, want 200 (vLLM reads the scheme case-insensitively)", auth, resp.StatusCode, body)
		}
	}
	// The token itself stays exact.
	resp, _ := h.must("POST", "/v1/chat/completions", chatBody("hi", `"max_tokens":2`), "Authorization", "Bearer SK-TEST")
	if resp.StatusCode != 401 {
		t.Errorf("wrong-case token: status %d, want 401", resp.StatusCode)
	}
}

// vLLM's OpenAIServing._is_model_supported (serving_engine.py) returns True for any
// falsy model name (`if not model_name: return True`), so "model": "" is served by the
// default model exactly as "model": null is, which mockllm already honours.
func TestEmptyModelNameServesDefault(t *testing.T) {
	h := start(t, Options{})
	body := `{"model":"","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`
	resp, b := h.must("POST", "/v1/chat/completions", body)
	if resp.StatusCode != 200 {
		t.Fatalf(`"model": "": status %d %s, want 200 as from vLLM`, resp.StatusCode, b)
	}
	if got := decode[chatResp](t, b).Model; got != "mock-1" {
		t.Errorf("model = %q, want the served name mock-1", got)
	}
}

// vLLM serves GET and POST /ping (SageMaker's health check, the same answer as
// /health: 200, empty body) and GET /load ({"server_load": N}) on every OpenAI server,
// with no flag: api_server.py `@router.get("/ping") @router.post("/ping") async def
// ping(...): return await health(raw_request)` (0.11; 0.12 moves it to
// register_sagemaker_routes) and `@router.get("/load")`.
func TestPingAndLoadRoutes(t *testing.T) {
	h := start(t, Options{})
	for _, method := range []string{"GET", "POST"} {
		resp, b, err := h.do(method, "/ping", "")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || len(b) != 0 {
			t.Errorf("%s /ping: status %d body %q, want 200 with an empty body as vLLM's /health", method, resp.StatusCode, b)
		}
	}
	resp, b := h.must("GET", "/load", "")
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"server_load"`) {
		t.Errorf("GET /load: status %d body %q, want 200 {\"server_load\":0}", resp.StatusCode, b)
	}
}

// vLLM 0.11's PrometheusStatLogger (vllm/v1/metrics/loggers.py) registers
// vllm:gpu_cache_usage_perc only `if self.show_hidden_metrics:` ("Deprecated in
// 0.9.2 - Renamed as vllm:kv_cache_usage_perc / With 0.11.x you can enable with
// --show-hidden-metrics-for-version=0.10 / TODO: remove in 0.12.0"), and vLLM 0.12
// removed it (vllm-project/vllm#29330). mockllm reports itself as 0.11.0 (/version)
// and leaves it out too, so a load balancer or dashboard tested against it reads the
// series real vLLM 0.11/0.12 has.
func TestMetricsLeaveOutHiddenGPUCacheGauge(t *testing.T) {
	h := start(t, Options{})
	fams := scrape(t, h)
	if _, ok := fams["vllm:kv_cache_usage_perc"]; !ok {
		t.Fatal("no vllm:kv_cache_usage_perc")
	}
	if _, ok := fams["vllm:gpu_cache_usage_perc"]; ok {
		t.Error("vllm:gpu_cache_usage_perc exported by default; vLLM 0.11 hides it (needs --show-hidden-metrics-for-version=0.10) and 0.12 removed it")
	}
}

// vLLM's PrometheusStatLogger creates vllm:request_success_total for every
// FinishReason at start (`for reason in FinishReason: ...labels(model_name, str(idx),
// str(reason))`): stop, length and abort, so the abort series exists (at 0) from the
// first scrape.
func TestMetricsRequestSuccessAbortSeries(t *testing.T) {
	h := start(t, Options{})
	fams := scrape(t, h)
	fam, ok := fams["vllm:request_success_total"]
	if !ok {
		t.Fatal("no vllm:request_success_total")
	}
	var reasons []string
	for _, m := range fam.Metric {
		for _, l := range m.Label {
			if l.GetName() == "finished_reason" {
				reasons = append(reasons, l.GetValue())
			}
		}
	}
	for _, want := range []string{"stop", "length", "abort"} {
		found := false
		for _, r := range reasons {
			found = found || r == want
		}
		if !found {
			t.Errorf("vllm:request_success_total has finished_reason %v, missing %q", reasons, want)
		}
	}
}

// A request whose client leaves before its answer is done is aborted, as vLLM aborts
// it: vllm:request_success_total counts it under finished_reason "abort", running or
// queued, streamed or not.
func TestClientGoneCountsAbort(t *testing.T) {
	for _, stream := range []bool{false, true} {
		h := start(t, Options{MaxNumSeqs: 1, TTFT: time.Hour})
		extra := `"max_tokens":1`
		if stream {
			extra += `,"stream":true`
		}
		var cancels []context.CancelFunc
		var dones []chan struct{}
		for _, want := range []func(Stats) bool{
			func(s Stats) bool { return s.Running == 1 },
			func(s Stats) bool { return s.Waiting == 1 },
		} {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				req, _ := http.NewRequestWithContext(ctx, "POST", "http://mock.test/v1/chat/completions", strings.NewReader(chatBody("hi", extra)))
				req.Header.Set("Content-Type", "application/json")
				if resp, err := h.client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
			waitStats(t, h, want)
			cancels, dones = append(cancels, cancel), append(dones, done)
		}
		for i := range cancels {
			cancels[i]()
			<-dones[i]
		}
		abort := map[string]string{"model_name": "mock-1", "engine": "0", "finished_reason": "abort"}
		deadline := time.Now().Add(5 * time.Second)
		for {
			got := value(t, scrape(t, h), "vllm:request_success_total", abort)
			if got == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("stream %v: vllm:request_success_total{finished_reason=abort} = %v after a running and a queued request were abandoned; want 2", stream, got)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
