package mockllm

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestFaultHeaders(t *testing.T) {
	h := start(t, Options{MaxTokens: 20})
	stream := chatBody("fault", `"stream":true,"max_tokens":6`)
	cases := []struct {
		name   string
		body   string
		hdr    []string
		status int
		check  func(t *testing.T, hdr map[string]string, b []byte, err error)
	}{
		{"x-mock-status answers that status with an error body", chatBody("x", ""), []string{"x-mock-status", "503", "x-mock-retry-after", "2"}, 503,
			func(t *testing.T, hdr map[string]string, b []byte, _ error) {
				if hdr["Retry-After"] != "2" {
					t.Errorf("retry-after %q", hdr["Retry-After"])
				}
				want := `{"error":{"message":"mockllm: status 503 requested by x-mock-status","type":"ServiceUnavailableError","param":null,"code":503}}`
				if string(b) != want {
					t.Errorf("body %s", b)
				}
			}},
		{"x-mock-status applies to any route", `{"input":"x"}`, []string{"x-mock-status", "429"}, 429, nil},
		{"x-mock-status below 400 is ignored", chatBody("x", `"max_tokens":1`), []string{"x-mock-status", "204"}, 200, nil},
		{"x-mock-tokens sets the natural length", chatBody("x", ""), []string{"x-mock-tokens", "3"}, 200,
			func(t *testing.T, _ map[string]string, b []byte, _ error) {
				r := decode[chatResp](t, b)
				if r.Usage.CompletionTokens != 3 || *r.Choices[0].FinishReason != "stop" {
					t.Errorf("%s", b)
				}
			}},
		{"max_tokens still cuts x-mock-tokens", chatBody("x", `"max_tokens":2`), []string{"x-mock-tokens", "300"}, 200,
			func(t *testing.T, _ map[string]string, b []byte, _ error) {
				if r := decode[chatResp](t, b); r.Usage.CompletionTokens != 2 || *r.Choices[0].FinishReason != "length" {
					t.Errorf("%s", b)
				}
			}},
		{"Options.MaxTokens caps x-mock-tokens", chatBody("x", ""), []string{"x-mock-tokens", "50"}, 200,
			func(t *testing.T, _ map[string]string, b []byte, _ error) {
				if r := decode[chatResp](t, b); r.Usage.CompletionTokens != 20 || *r.Choices[0].FinishReason != "length" {
					t.Errorf("MaxTokens 20, x-mock-tokens 50: %s; want 20 tokens, finish_reason \"length\"", b)
				}
			}},
		{"x-mock-cut-after closes the stream after N content chunks", stream, []string{"x-mock-cut-after", "2"}, 200,
			func(t *testing.T, _ map[string]string, b []byte, err error) {
				if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("read error %v, want unexpected EOF", err)
				}
				if n := bytes.Count(b, []byte(`"delta":{"content":`)); n != 2 {
					t.Errorf("%d content chunks before the cut: %s", n, b)
				}
				if bytes.Contains(b, []byte("[DONE]")) || bytes.Contains(b, []byte(`"finish_reason":"`)) {
					t.Errorf("cut stream ended properly: %s", b)
				}
			}},
		{"x-mock-cut-after past the content cuts before the finish", stream, []string{"x-mock-cut-after", "99"}, 200,
			func(t *testing.T, _ map[string]string, b []byte, err error) {
				if err == nil || bytes.Contains(b, []byte("[DONE]")) || bytes.Count(b, []byte(`"delta":{"content":`)) != 6 {
					t.Errorf("err %v body %s", err, b)
				}
			}},
		{"x-mock-garbage answers 200 with a body that is not JSON", chatBody("x", ""), []string{"x-mock-garbage", "1"}, 200,
			func(t *testing.T, hdr map[string]string, b []byte, _ error) {
				if json.Valid(b) || hdr["Content-Type"] != "application/json" {
					t.Errorf("%s %s", hdr["Content-Type"], b)
				}
			}},
		{"x-mock-garbage on a stream sends an event that is not JSON", stream, []string{"x-mock-garbage", "1"}, 200,
			func(t *testing.T, hdr map[string]string, b []byte, _ error) {
				evs := parseSSE(t, b)
				if hdr["Content-Type"] != "text/event-stream; charset=utf-8" || json.Valid([]byte(evs[0].data)) {
					t.Errorf("%s %s", hdr["Content-Type"], b)
				}
			}},
		{"authorization is echoed as seen", chatBody("x", `"max_tokens":1`), []string{"Authorization", "Bearer whatever"}, 200,
			func(t *testing.T, hdr map[string]string, _ []byte, _ error) {
				if hdr["X-Mock-Saw-Authorization"] != "yes" {
					t.Errorf("x-mock-saw-authorization %q", hdr["X-Mock-Saw-Authorization"])
				}
			}},
		{"no authorization is echoed as not seen", chatBody("x", `"max_tokens":1`), nil, 200,
			func(t *testing.T, hdr map[string]string, _ []byte, _ error) {
				if hdr["X-Mock-Saw-Authorization"] != "no" {
					t.Errorf("x-mock-saw-authorization %q", hdr["X-Mock-Saw-Authorization"])
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := "/v1/chat/completions"
			if strings.HasPrefix(tc.body, `{"input"`) {
				path = "/v1/embeddings"
			}
			resp, b, err := h.do("POST", path, tc.body, tc.hdr...)
			if resp == nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			hdr := map[string]string{}
			for k := range resp.Header {
				hdr[k] = resp.Header.Get(k)
			}
			if tc.check != nil {
				tc.check(t, hdr, b, err)
			} else if err != nil {
				t.Fatal(err)
			}
		})
	}
	if st := h.s.Stats(); st.CutStreams != 2 || st.InjectedErrors != 2 {
		t.Errorf("cut %d injected %d", st.CutStreams, st.InjectedErrors)
	}
}

func TestErrorRate(t *testing.T) {
	t.Run("all", func(t *testing.T) {
		h := start(t, Options{ErrorRate: 1})
		resp, b := h.must("POST", "/v1/chat/completions", chatBody("x", ""))
		want := `{"error":{"message":"mockllm: injected error (error-rate)","type":"InternalServerError","param":null,"code":500}}`
		if resp.StatusCode != 500 || string(b) != want {
			t.Errorf("%d %s", resp.StatusCode, b)
		}
	})
	t.Run("fraction is seeded", func(t *testing.T) {
		count := func() int {
			h := start(t, Options{ErrorRate: 0.25, Seed: 5})
			n := 0
			for range 200 {
				if resp, _ := h.must("POST", "/v1/chat/completions", chatBody("x", `"max_tokens":1`)); resp.StatusCode == 500 {
					n++
				}
			}
			return n
		}
		a, b := count(), count()
		if a != b || a < 25 || a > 75 {
			t.Errorf("errors %d then %d of 200 at rate 0.25", a, b)
		}
	})
	t.Run("invalid requests are not drawn", func(t *testing.T) {
		h := start(t, Options{ErrorRate: 1})
		if resp, _ := h.must("POST", "/v1/chat/completions", `{`); resp.StatusCode != 400 {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
}

func TestDisconnectRate(t *testing.T) {
	h := start(t, Options{DisconnectRate: 1, MaxTokens: 10})
	_, b, err := h.do("POST", "/v1/chat/completions", chatBody("x", `"stream":true`), "x-mock-tokens", "8")
	if err == nil || bytes.Contains(b, []byte("[DONE]")) {
		t.Fatalf("stream was not cut: err %v body %s", err, b)
	}
	if n := bytes.Count(b, []byte(`"delta":{"content":`)); n != 4 {
		t.Errorf("cut after %d content chunks, want half of 8", n)
	}
	if resp, _ := h.must("POST", "/v1/chat/completions", chatBody("x", `"max_tokens":8`)); resp.StatusCode != 200 {
		t.Errorf("plain requests are not cut: %d", resp.StatusCode)
	}
}

func TestStatsRecordsLastRequest(t *testing.T) {
	h := start(t, Options{})
	if st := h.s.Stats(); st.LastHeaders != nil || st.LastBody != nil {
		t.Fatalf("fresh server has a last request: %+v", st)
	}
	body := chatBody("remember me", `"max_tokens":1,"tools":[{"type":"function"}]`)
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	h.must("POST", "/v1/chat/completions", body, "traceparent", tp, "Authorization", "Bearer k")
	h.must("GET", "/metrics", "")
	h.must("GET", "/health", "")
	st := h.s.Stats()
	if st.LastPath != "/v1/chat/completions" || string(st.LastBody) != body {
		t.Errorf("last %s %s", st.LastPath, st.LastBody)
	}
	if st.LastHeaders.Get("Traceparent") != tp || st.LastHeaders.Get("authorization") != "Bearer k" {
		t.Errorf("headers %v", st.LastHeaders)
	}
	want := map[string]int64{"/v1/chat/completions": 1, "/metrics": 1, "/health": 1}
	for k, v := range want {
		if st.Requests[k] != v {
			t.Errorf("requests %v, want %v", st.Requests, want)
		}
	}
}

// scrape reads /metrics with Prometheus' own parser.
func scrape(t *testing.T, h *harness) map[string]*dto.MetricFamily {
	t.Helper()
	resp, b := h.must("GET", "/metrics", "")
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("content type %q", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	return fams
}

// value returns the sample of fam whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	fam, ok := fams[name]
	if !ok {
		t.Fatalf("no %s", name)
	}
next:
	for _, m := range fam.Metric {
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		}
	}
	t.Fatalf("no %s%v", name, want)
	return 0
}

func TestMetrics(t *testing.T) {
	h := start(t, Options{Model: `a"model`, MaxTokens: 10})
	h.must("POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"12345678"}],"max_tokens":3}`)
	h.must("POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"1234"}],"stream":true,"max_tokens":2}`)
	h.must("POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"1234"}]}`, "x-mock-tokens", "4")
	h.must("POST", "/v1/embeddings", `{"input":"12345678"}`)
	fams := scrape(t, h)
	// vLLM V1 labels every series with the engine index too.
	m := map[string]string{"model_name": `a"model`, "engine": "0"}
	cases := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"vllm:num_requests_running", m, 0},
		{"vllm:num_requests_waiting", m, 0},
		{"vllm:kv_cache_usage_perc", m, 0},
		{"vllm:request_success_total", map[string]string{"model_name": `a"model`, "engine": "0", "finished_reason": "abort"}, 0},
		{"vllm:prompt_tokens_total", m, 2 + 1 + 1 + 2},
		{"vllm:generation_tokens_total", m, 3 + 2 + 4},
		{"vllm:request_success_total", map[string]string{"model_name": `a"model`, "engine": "0", "finished_reason": "length"}, 2},
		{"vllm:request_success_total", map[string]string{"model_name": `a"model`, "engine": "0", "finished_reason": "stop"}, 1},
		{"mockllm_requests_total", map[string]string{"route": "/v1/chat/completions"}, 3},
		{"mockllm_requests_total", map[string]string{"route": "/v1/embeddings"}, 1},
		{"mockllm_requests_total", map[string]string{"route": "/metrics"}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := value(t, fams, tc.name, tc.labels); got != tc.want {
				t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
			}
		})
	}
	for _, name := range []string{"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"} {
		if fams[name].GetType() != dto.MetricType_GAUGE {
			t.Errorf("%s is %v", name, fams[name].GetType())
		}
	}
}

// steppingClock is an Options.Now that moves step forward at every reading.
type steppingClock struct {
	mu   sync.Mutex
	now  time.Time
	step time.Duration
}

func (c *steppingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(c.step)
	return c.now
}

// TestLatencyHistograms: vLLM's /metrics (v1/metrics/loggers.py) has the histograms
// vllm:time_to_first_token_seconds, vllm:inter_token_latency_seconds (and its
// deprecated twin vllm:time_per_output_token_seconds) and
// vllm:e2e_request_latency_seconds, labelled model_name and engine, with vLLM's
// buckets; dashboards and latency-aware balancers read them. They count the time a
// request queued for a slot (here 100ms of a clock that steps at every reading), then
// its TTFT and TPOTs.
func TestLatencyHistograms(t *testing.T) {
	clock := &steppingClock{now: fixedNow(), step: 100 * time.Millisecond}
	release := make(chan struct{})
	var once sync.Once
	h := start(t, Options{MaxTokens: 8, MaxNumSeqs: 1, TTFT: 40 * time.Millisecond, TPOT: 20 * time.Millisecond,
		Now: clock.Now, Sleep: func(time.Duration) { <-release }})
	defer once.Do(func() { close(release) })
	plain := make(chan struct{})
	go func() {
		defer close(plain)
		h.must("POST", "/v1/chat/completions", chatBody("first", `"max_tokens":3`))
	}()
	waitStats(t, h, func(s Stats) bool { return s.Running == 1 })
	req, _ := http.NewRequest("POST", "http://mock.test/v1/chat/completions", strings.NewReader(chatBody("queued", `"max_tokens":3,"stream":true`)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	waitStats(t, h, func(s Stats) bool { return s.Waiting == 1 })
	once.Do(func() { close(release) })
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	<-plain
	h.must("POST", "/v1/embeddings", `{"input":"not a generation"}`)
	fams := scrape(t, h)
	cases := []struct {
		name       string
		count      uint64
		sum        float64
		bucket     float64 // an upper bound, and
		cumulative uint64  // the observations at or below it
		buckets    int     // vLLM's bounds and +Inf
	}{
		// plain 40ms; stream queued 100ms, then 40ms
		{"vllm:time_to_first_token_seconds", 2, 0.18, 0.04, 1, 23},
		// two gaps each of 20ms
		{"vllm:inter_token_latency_seconds", 4, 0.08, 0.025, 4, 20},
		// the same observations under vLLM 0.11's deprecated name
		{"vllm:time_per_output_token_seconds", 4, 0.08, 0.025, 4, 20},
		// plain 40+2*20ms; stream 100ms more
		{"vllm:e2e_request_latency_seconds", 2, 0.26, 0.3, 2, 22},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fam, ok := fams[tc.name]
			if !ok || fam.GetType() != dto.MetricType_HISTOGRAM || len(fam.Metric) != 1 {
				t.Fatalf("no histogram %s: %v", tc.name, fam)
			}
			m := fam.Metric[0]
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["model_name"] != "mock-1" || labels["engine"] != "0" || len(labels) != 2 {
				t.Errorf("labels %v, want model_name and engine", labels)
			}
			hist := m.Histogram
			if hist.GetSampleCount() != tc.count || math.Abs(hist.GetSampleSum()-tc.sum) > 1e-9 || len(hist.Bucket) != tc.buckets {
				t.Errorf("count %d sum %v buckets %d, want %d, %v, %d", hist.GetSampleCount(), hist.GetSampleSum(), len(hist.Bucket), tc.count, tc.sum, tc.buckets)
			}
			found := false
			for _, b := range hist.Bucket {
				if b.GetUpperBound() == tc.bucket {
					found = true
					if b.GetCumulativeCount() != tc.cumulative {
						t.Errorf("bucket le=%v: %d, want %d", tc.bucket, b.GetCumulativeCount(), tc.cumulative)
					}
				}
			}
			if !found {
				t.Errorf("no bucket le=%v", tc.bucket)
			}
		})
	}
}

// TestMaxNumSeqs holds one request in its first-token wait and checks that the next
// one queues, as vLLM's scheduler does, and that /metrics says so.
func TestMaxNumSeqs(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 4)
	var once sync.Once
	h := start(t, Options{MaxNumSeqs: 1, TTFT: time.Second, Sleep: func(time.Duration) {
		entered <- struct{}{}
		<-release
	}})
	defer once.Do(func() { close(release) })
	var wg sync.WaitGroup
	statuses := make([]int, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _, err := h.do("POST", "/v1/chat/completions", chatBody("q", `"max_tokens":1`))
			if err == nil {
				statuses[i] = resp.StatusCode
			}
		}()
	}
	<-entered
	deadline := time.Now().Add(10 * time.Second)
	for h.s.Stats().Waiting != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no request waiting: %+v", h.s.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	fams := scrape(t, h)
	m := map[string]string{"model_name": "mock-1"}
	if r, w := value(t, fams, "vllm:num_requests_running", m), value(t, fams, "vllm:num_requests_waiting", m); r != 1 || w != 1 {
		t.Errorf("running %v waiting %v", r, w)
	}
	if u := value(t, fams, "vllm:kv_cache_usage_perc", m); u != 1 {
		t.Errorf("cache usage %v", u)
	}
	once.Do(func() { close(release) })
	wg.Wait()
	if statuses[0] != 200 || statuses[1] != 200 {
		t.Errorf("statuses %v", statuses)
	}
}

// TestQueuedStreamGetsHeadersAtOnce: vLLM returns its StreamingResponse as soon as the
// request is queued, so a stream waiting behind --max-num-seqs has its 200 and
// headers at once, and its first chunk once a slot frees.
func TestQueuedStreamGetsHeadersAtOnce(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	h := start(t, Options{MaxNumSeqs: 1, TTFT: time.Second, Sleep: func(time.Duration) { <-release }})
	defer once.Do(func() { close(release) })
	plain := make(chan int, 1)
	go func() {
		resp, _, err := h.do("POST", "/v1/chat/completions", chatBody("first", `"max_tokens":1`))
		if err != nil {
			plain <- 0
			return
		}
		plain <- resp.StatusCode
	}()
	waitStats(t, h, func(s Stats) bool { return s.Running == 1 })
	req, _ := http.NewRequest("POST", "http://mock.test/v1/chat/completions",
		strings.NewReader(chatBody("second", `"max_tokens":1,"stream":true`)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req) // returns with the headers
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	waitStats(t, h, func(s Stats) bool { return s.Running == 1 && s.Waiting == 1 })
	once.Do(func() { close(release) })
	b, err := io.ReadAll(resp.Body)
	if err != nil || !strings.HasSuffix(string(b), "data: [DONE]\n\n") {
		t.Errorf("stream after the wait: %v %s", err, b)
	}
	if st := <-plain; st != 200 {
		t.Errorf("plain request: %d", st)
	}
}

// waitStats polls Stats until ok, for states other goroutines reach.
func waitStats(t *testing.T, h *harness, ok func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(h.s.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("never reached: %+v", h.s.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}
