package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// loadfOutcome is what one client saw of one call.
type loadfOutcome struct {
	stream  bool
	status  int    // 0: no answer at all (transport error)
	outcome string // streams answered 200: done, cut, bad, timeout
	code    string // error answers: the error code
	in, out int64  // the usage the client saw
	problem string // what was malformed, if anything
	id      string
	at      time.Time // when the call was sent
}

// loadfUsage is the usage member of an answer or a stream's usage chunk.
type loadfUsage struct {
	Usage *struct {
		Prompt     int64 `json:"prompt_tokens"`
		Completion int64 `json:"completion_tokens"`
	} `json:"usage"`
}

// loadfCall sends one chat call (a stream with include_usage, or a plain call) and
// checks and tallies what comes back.
func loadfCall(c *http.Client, url, key string, stream bool, i int, hdr map[string]string) loadfOutcome {
	o := loadfOutcome{stream: stream, at: time.Now()}
	opts := ""
	if stream {
		opts = `"stream":true,"stream_options":{"include_usage":true},`
	}
	body := fmt.Sprintf(`{"model":"chat",%s"user":"u%d","max_tokens":12,"messages":[{"role":"user","content":"load %d"}]}`, opts, i%7, i)
	req, err := http.NewRequest("POST", url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		o.problem = err.Error()
		return o
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		o.problem = "no answer: " + err.Error()
		return o
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	o.status = resp.StatusCode
	o.id = resp.Header.Get("X-Request-Id")
	if err != nil {
		o.problem = fmt.Sprintf("answer %d cut short after %d bytes: %v: ...%q", resp.StatusCode, len(b), err, chaosTail(b))
		return o
	}
	if o.id == "" {
		o.problem = fmt.Sprintf("answer %d without x-request-id", resp.StatusCode)
		return o
	}
	if resp.StatusCode != 200 {
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			o.problem = fmt.Sprintf("error %d with content type %q: %.200q", resp.StatusCode, ct, b)
			return o
		}
		_, code, _, _, err := openAIErrorBody(b)
		if err != nil {
			o.problem = fmt.Sprintf("status %d: %v", resp.StatusCode, err)
		}
		o.code = code
		return o
	}
	if !stream {
		var a struct {
			Object  string `json:"object"`
			Choices []struct {
				FinishReason string `json:"finish_reason"`
			} `json:"choices"`
			loadfUsage
		}
		if err := json.Unmarshal(b, &a); err != nil || a.Object != "chat.completion" || len(a.Choices) == 0 || a.Choices[0].FinishReason == "" || a.Usage == nil {
			o.problem = fmt.Sprintf("malformed 200 (%v): %.300q", err, b)
			return o
		}
		o.in, o.out = a.Usage.Prompt, a.Usage.Completion
		return o
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		o.problem = fmt.Sprintf("stream 200 with content type %q: %.200q", ct, b)
		return o
	}
	outcome, p := chaosCheckStream(b, false)
	if p != "" && strings.Contains(p, "include_usage had") {
		p = ""
	}
	if p != "" && !strings.Contains(p, "without include_usage showed") {
		o.problem = p + fmt.Sprintf(" (%d bytes)", len(b))
		return o
	}
	if outcome == "" {
		outcome = "done"
	}
	o.outcome = outcome
	for _, ev := range strings.Split(string(b), "\n\n") {
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok || !strings.Contains(data, `"usage"`) {
			continue
		}
		var u loadfUsage
		if json.Unmarshal([]byte(data), &u) == nil && u.Usage != nil && u.Usage.Prompt+u.Usage.Completion > 0 {
			o.in, o.out = u.Usage.Prompt, u.Usage.Completion
		}
	}
	return o
}

// loadfTally sums outcomes: by status, by stream outcome, and the tokens seen.
type loadfTally struct {
	byStatus map[string]int
	byStream map[string]int
	byCode   map[string]int
	in, out  int64
	problems []string
	total    int
}

func loadfSum(outs []loadfOutcome) loadfTally {
	t := loadfTally{byStatus: map[string]int{}, byStream: map[string]int{}, byCode: map[string]int{}}
	for _, o := range outs {
		t.total++
		if o.problem != "" {
			t.problems = append(t.problems, fmt.Sprintf("%s (stream %v, status %d, id %s)", o.problem, o.stream, o.status, o.id))
		}
		t.byStatus[strconv.Itoa(o.status)]++
		if o.code != "" {
			t.byCode[o.code]++
		}
		if o.stream && o.status == 200 {
			t.byStream[o.outcome]++
		}
		t.in += o.in
		t.out += o.out
	}
	return t
}

// loadfMetrics is what the gateway's metrics say of the endpoint.
type loadfMetrics struct {
	byCode       map[string]int
	streamErrors int
	in, out      int64
	inFlight     float64
}

func loadfFromFamilies(fams map[string]*dto.MetricFamily, endpoint string) loadfMetrics {
	m := loadfMetrics{byCode: map[string]int{}}
	ep := func(l map[string]string) bool { return l["endpoint"] == endpoint }
	if fam := fams["tollgate_requests_total"]; fam != nil {
		for _, s := range fam.Metric {
			labels := map[string]string{}
			for _, l := range s.Label {
				labels[l.GetName()] = l.GetValue()
			}
			// The usual codes exist at 0 from the start: only counts are compared.
			if v := int(s.Counter.GetValue()); ep(labels) && v > 0 {
				m.byCode[labels["code"]] += v
			}
		}
	}
	se, _ := promtest.Sum(fams, "tollgate_stream_errors_total", ep)
	m.streamErrors = int(se)
	in, _ := promtest.Sum(fams, "tollgate_tokens_total", func(l map[string]string) bool { return ep(l) && l["type"] == "input" })
	out, _ := promtest.Sum(fams, "tollgate_tokens_total", func(l map[string]string) bool { return ep(l) && l["type"] == "output" })
	m.in, m.out = int64(in), int64(out)
	m.inFlight, _ = promtest.Sum(fams, "tollgate_in_flight_requests", ep)
	return m
}

// loadfGather reads the gateway's registry directly (it outlives the listeners).
func loadfGather(t *testing.T, g *gw, endpoint string) loadfMetrics {
	t.Helper()
	list, err := g.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	fams := map[string]*dto.MetricFamily{}
	for _, f := range list {
		fams[f.GetName()] = f
	}
	return loadfFromFamilies(fams, endpoint)
}

// loadfAccess counts the access log's request lines of an endpoint by status.
func loadfAccess(logs, endpoint string) (map[string]int, int) {
	by := map[string]int{}
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, `"msg":"request"`) {
			continue
		}
		var e struct {
			Endpoint string `json:"endpoint"`
			Status   int    `json:"status"`
		}
		if json.Unmarshal([]byte(line), &e) != nil {
			continue
		}
		if endpoint != "" && e.Endpoint != endpoint {
			continue
		}
		n++
		by[strconv.Itoa(e.Status)]++
	}
	return by, n
}

// loadfEstimated sums the tokens of the access log's request lines of an endpoint
// whose usage is the gateway's estimate.
func loadfEstimated(logs, endpoint string) (in, out int64) {
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, `"msg":"request"`) {
			continue
		}
		var e struct {
			Endpoint  string `json:"endpoint"`
			Estimated bool   `json:"usage_estimated"`
			In        int64  `json:"input_tokens"`
			Out       int64  `json:"output_tokens"`
		}
		if json.Unmarshal([]byte(line), &e) != nil || !e.Estimated || endpoint != "" && e.Endpoint != endpoint {
			continue
		}
		in += e.In
		out += e.Out
	}
	return in, out
}

func loadfMap(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s:%d ", k, m[k])
	}
	return b.String()
}

// loadfConfig is a gateway in front of backend a or b, with a concurrency and a
// token limit on chat.
func loadfConfig(a, b, route string, concurrency int) string {
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 64KiB, shutdown_grace: 10s}
backends:
  a: {provider: openai, base_url: "http://%s/v1", model: up-model, timeout: 10s, connect_timeout: 300ms}
  b: {provider: openai, base_url: "http://%s/v1", model: up-model, timeout: 10s, connect_timeout: 300ms}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: %s}]
    timeout: 10s
    limits:
      - {per: endpoint, concurrency: %d}
      - {per: user, tokens: 10000000, window: minute}
logging: {level: info}
`, a, b, route, concurrency)
}

// TestLoadFaultsReloadAndUpstreamKillAddUp runs 120 concurrent clients (streams and
// plain calls) while the upstream serving them is killed mid-stream and the config is
// rewritten and reloaded to move chat to another backend with other limits. Every
// call must get one well-formed answer, and the metrics and the access log must add
// up to what the clients saw.
func TestLoadFaultsReloadAndUpstreamKillAddUp(t *testing.T) {
	opts := mockllm.Options{Model: "up-model", MaxTokens: 12, TTFT: 2 * time.Millisecond, TPOT: 8 * time.Millisecond, Seed: 3}
	upA := startChaosUpstream(t, opts)
	upB := startChaosUpstream(t, opts)
	g := startGateway(t, loadfConfig(upA.addr, upB.addr, "a", 500))
	tr := &http.Transport{MaxIdleConnsPerHost: 200}
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)

	// Warm up, then the goroutine baseline.
	var warm []loadfOutcome
	for i := range 2 {
		o := loadfCall(c, g.url, "", i == 0, i, nil)
		if o.status != 200 || o.problem != "" {
			t.Fatalf("warm-up: %+v", o)
		}
		warm = append(warm, o)
	}
	tr.CloseIdleConnections()
	baseline := len(chaosGoroutines())

	const workers, each = 120, 5
	outs := make([]loadfOutcome, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				n := w*each + i
				stream := n%2 == 0
				outs[n] = loadfCall(c, g.url, "", stream, n, map[string]string{"x-mock-tpot": "15ms"})
			}
		}()
	}
	// The upstream dies with streams running on it, then chat moves to b.
	chaosEventually(t, 10*time.Second, func() (bool, string) {
		cur := upA.current()
		return cur != nil && cur.Stats().Running >= 20, "fewer than 20 requests running on a"
	})
	upA.kill()
	writeAtomic(t, g.path, loadfConfig(upA.addr, upB.addr, "b", 300))
	if err := g.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	reloaded := time.Now()
	wg.Wait()
	late := map[string]int{}
	for _, o := range outs {
		if o.at.After(reloaded) {
			late[strconv.Itoa(o.status)+" "+o.code]++
		}
	}
	t.Logf("calls sent after the reload returned: %s", loadfMap(late))

	cl := loadfSum(append(outs, warm...))
	t.Logf("clients: status %s codes %s streams %s tokens in %d out %d", loadfMap(cl.byStatus), loadfMap(cl.byCode), loadfMap(cl.byStream), cl.in, cl.out)
	for i, p := range cl.problems {
		if i == 20 {
			t.Errorf("... and %d more", len(cl.problems)-i)
			break
		}
		t.Errorf("malformed answer: %s", p)
	}
	if cl.byStream["cut"] == 0 {
		t.Errorf("no stream was cut by the kill: the test did not cover it (%s)", loadfMap(cl.byStream))
	}
	loadfCheckBooks(t, g, cl, baseline, tr)
}

// loadfCheckBooks checks that the metrics and the access log add up to what the
// clients saw, and that nothing stays in flight or running.
func loadfCheckBooks(t *testing.T, g *gw, cl loadfTally, baseline int, tr *http.Transport) {
	t.Helper()
	var m loadfMetrics
	ok, why := chaosPoll(10*time.Second, func() (bool, string) {
		m = loadfGather(t, g, "chat")
		return m.inFlight == 0, fmt.Sprintf("tollgate_in_flight_requests{endpoint=chat} = %v", m.inFlight)
	})
	if !ok {
		t.Errorf("after the load: %s", why)
	}
	// One Gather is no snapshot: the registry reads its collectors concurrently, in no
	// set order, so the read that saw the gauge at 0 may have read the requests and
	// tokens before the last request's record counted them (a stream's client has its
	// last byte before record runs; record counts a request, then takes it out of
	// flight). With nothing in flight, a second read has every count.
	m = loadfGather(t, g, "chat")
	want := map[string]int{}
	for k, v := range cl.byStatus {
		if k != "0" {
			want[k] = v
		}
	}
	if loadfMap(m.byCode) != loadfMap(want) {
		t.Errorf("tollgate_requests_total{endpoint=chat} by code: %s; the clients got %s", loadfMap(m.byCode), loadfMap(want))
	}
	failedStreams := cl.byStream["cut"] + cl.byStream["bad"] + cl.byStream["timeout"]
	if m.streamErrors != failedStreams {
		t.Errorf("tollgate_stream_errors_total{endpoint=chat} = %d; the clients saw %d streams end with an error event (%s)", m.streamErrors, failedStreams, loadfMap(cl.byStream))
	}
	// record writes the access log line after the request leaves flight.
	var logBy map[string]int
	var logged int
	chaosPoll(5*time.Second, func() (bool, string) {
		logBy, logged = loadfAccess(g.logs.String(), "chat")
		return logged >= cl.total-cl.byStatus["0"], ""
	})
	// A stream cut before its usage is counted by the gateway's estimate of what it
	// streamed, which its access log line gives (usage_estimated), not its client.
	estIn, estOut := loadfEstimated(g.logs.String(), "chat")
	if m.out != cl.out+estOut || m.in != cl.in+estIn {
		t.Errorf("tollgate_tokens_total{endpoint=chat}: input %d output %d; the clients were told of %d and %d, and the cut streams estimated at %d and %d",
			m.in, m.out, cl.in, cl.out, estIn, estOut)
	}
	if logged != cl.total-cl.byStatus["0"] || loadfMap(logBy) != loadfMap(want) {
		t.Errorf("access log of chat: %d lines, by status %s; the clients got %d answers, %s", logged, loadfMap(logBy), cl.total-cl.byStatus["0"], loadfMap(want))
	}
	if tr != nil {
		tr.CloseIdleConnections()
		ok, why = chaosPoll(10*time.Second, func() (bool, string) {
			left := chaosGoroutines()
			return len(left) <= baseline+10, fmt.Sprintf("%d goroutines, baseline %d:\n%s", len(left), baseline, strings.Join(left, "\n\n"))
		})
		if !ok {
			t.Errorf("goroutines not back to baseline: %.20000s", why)
		}
	}
}

// loadfRedisConfig is chat behind one upstream with a Redis-shared concurrency cap
// and token limit.
func loadfRedisConfig(up, redisURL string, concurrency int) string {
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 64KiB, shutdown_grace: 5s}
backends:
  a: {provider: openai, base_url: "http://%s/v1", model: up-model, timeout: 10s}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: a}]
    limits:
      - {per: endpoint, concurrency: %d}
      - {per: user, tokens: 5000000, window: minute}
limiter: {store: redis, redis: {url: "%s"}, on_redis_error: allow, timeout: 50ms, concurrency_lease: 60s}
logging: {level: info}
`, up, concurrency, redisURL)
}

// TestLoadFaultsRedisRestartSharedLimitsAddUp runs 60 clients over three gateways sharing
// a concurrency cap and a token limit in Redis while Redis is killed and restarted
// empty. Every call gets one well-formed answer; afterwards each gateway's metrics
// and access log add up to what its clients saw, no concurrency lease is left in
// Redis, and a burst up to the full cap spread over the gateways is admitted.
func TestLoadFaultsRedisRestartSharedLimitsAddUp(t *testing.T) {
	loadfRedisFault(t, "kill")
}

// TestLoadFaultsRedisStallSharedLimitsAddUp is the same with Redis stalled (SIGSTOP)
// for 1.5 s, past the limiter's timeout, rather than killed: checks sent before the
// stall run in Redis when it wakes up.
func TestLoadFaultsRedisStallSharedLimitsAddUp(t *testing.T) {
	loadfRedisFault(t, "pause")
}

func loadfRedisFault(t *testing.T, fault string) {
	rds := loadfRedis(t)
	_, up := startMock(t, mockllm.Options{Model: "up-model", MaxTokens: 12, TTFT: 2 * time.Millisecond, TPOT: 15 * time.Millisecond, Seed: 9})
	const limit = 15
	var gws []*gw
	for range 3 {
		gws = append(gws, startGateway(t, loadfRedisConfig(up, rds.URL(), limit)))
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 100}
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	for _, g := range gws {
		waitFor(t, func() bool { return !g.rt.Load().lim.Degraded() })
	}

	outs := make([][]loadfOutcome, len(gws))
	var mu sync.Mutex
	var answered int
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 60 {
		gi := w % len(gws)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				o := loadfCall(c, gws[gi].url, "", (w+i)%2 == 0, w*1000+i, nil)
				mu.Lock()
				outs[gi] = append(outs[gi], o)
				answered++
				mu.Unlock()
				if o.status == 429 {
					time.Sleep(time.Duration(5+(w*7+i)%20) * time.Millisecond)
				}
			}
		}()
	}
	progress := func(n int) {
		t.Helper()
		mu.Lock()
		target := answered + n
		mu.Unlock()
		chaosEventually(t, 20*time.Second, func() (bool, string) {
			mu.Lock()
			defer mu.Unlock()
			return answered >= target, fmt.Sprintf("%d answered, waiting for %d", answered, target)
		})
	}
	progress(100)
	time.Sleep(time.Second)
	if fault == "kill" {
		rds.Kill()
	} else {
		rds.Pause()
	}
	progress(100)
	time.Sleep(1500 * time.Millisecond)
	if fault == "kill" {
		rds.Restart()
	} else {
		rds.Resume()
	}
	progress(100)
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()

	for gi, g := range gws {
		cl := loadfSum(outs[gi])
		t.Logf("gateway %d: status %s codes %s streams %s", gi, loadfMap(cl.byStatus), loadfMap(cl.byCode), loadfMap(cl.byStream))
		for i, p := range cl.problems {
			if i == 10 {
				t.Errorf("... and %d more", len(cl.problems)-i)
				break
			}
			t.Errorf("gateway %d: malformed answer: %s", gi, p)
		}
		loadfCheckBooks(t, g, cl, 0, nil)
	}
	for _, g := range gws {
		waitFor(t, func() bool { return !g.rt.Load().lim.Degraded() })
	}

	held := func() int {
		n := 0
		for _, v := range chaosRedisLeases(rds.Addr()) {
			k, _ := strconv.Atoi(v)
			n += k
		}
		return n
	}
	if ok, _ := chaosPoll(5*time.Second, func() (bool, string) { return held() == 0, "" }); !ok {
		t.Errorf("5s after the load, with nothing in flight, %d concurrency leases are held in Redis: %v", held(), chaosRedisLeases(rds.Addr()))
	}
	// The whole cap is free: limit slow calls spread over the gateways are all admitted.
	burst := func(n int, hold string) map[int]int {
		codes := map[int]int{}
		var bmu sync.Mutex
		var bwg sync.WaitGroup
		for i := range n {
			bwg.Add(1)
			go func() {
				defer bwg.Done()
				o := loadfCall(c, gws[i%len(gws)].url, "", false, 90000+i, map[string]string{"x-mock-delay": hold})
				bmu.Lock()
				codes[o.status]++
				bmu.Unlock()
			}()
		}
		bwg.Wait()
		return codes
	}
	if ok, why := chaosPoll(5*time.Second, func() (bool, string) {
		codes := burst(limit, "300ms")
		return codes[200] == limit, fmt.Sprintf("a burst of %d (the cap) got %v; leases in Redis: %v", limit, codes, chaosRedisLeases(rds.Addr()))
	}); !ok {
		t.Errorf("concurrency slots still taken after the load: %s", why)
	}
}

func loadfRedis(t *testing.T) interface {
	URL() string
	Addr() string
	Kill()
	Restart()
	Pause()
	Resume()
} {
	return redistest.Start(t)
}

// loadfReloadLimitsConfig is chat with a concurrency cap, on the memory store or on
// Redis with the given check timeout (a change of which builds a new limiter).
func loadfReloadLimitsConfig(up, redisURL string, concurrency int, timeout string) string {
	lim := "limiter: {store: memory}\n"
	if redisURL != "" {
		lim = fmt.Sprintf("limiter: {store: redis, redis: {url: %q}, on_redis_error: allow, timeout: %s, concurrency_lease: 60s}\n", redisURL, timeout)
	}
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 64KiB, shutdown_grace: 5s}
backends:
  a: {provider: openai, base_url: "http://%s/v1", model: up-model, timeout: 10s}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: a}]
    limits:
      - {per: endpoint, concurrency: %d}
      - {per: user, tokens: 5000000, window: minute}
%slogging: {level: info}
`, up, concurrency, lim)
}

// loadfReloadLimits keeps 40 clients on a concurrency-capped endpoint while the
// config is reloaded three times (the cap lowered, raised, and for Redis the limiter
// rebuilt), with streams running on the old limits each time. Afterwards the cap in
// force admits exactly its number of calls at once: no slot of a request that began
// under an older config stays taken, nor is given back twice.
func loadfReloadLimits(t *testing.T, redisURL string) {
	_, up := startMock(t, mockllm.Options{Model: "up-model", MaxTokens: 12, TTFT: 2 * time.Millisecond, TPOT: 15 * time.Millisecond, Seed: 11})
	g := startGateway(t, loadfReloadLimitsConfig(up, redisURL, 12, "50ms"))
	tr := &http.Transport{MaxIdleConnsPerHost: 100}
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)

	var mu sync.Mutex
	var outs []loadfOutcome
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				o := loadfCall(c, g.url, "", (w+i)%2 == 0, w*1000+i, nil)
				mu.Lock()
				outs = append(outs, o)
				mu.Unlock()
				if o.status == 429 {
					time.Sleep(time.Duration(5+(w*7+i)%20) * time.Millisecond)
				}
			}
		}()
	}
	steps := []struct {
		cap     int
		timeout string
	}{{5, "50ms"}, {20, "60ms"}, {8, "70ms"}}
	for _, st := range steps {
		time.Sleep(600 * time.Millisecond)
		writeAtomic(t, g.path, loadfReloadLimitsConfig(up, redisURL, st.cap, st.timeout))
		if err := g.Reload(); err != nil {
			t.Fatalf("reload: %v", err)
		}
	}
	time.Sleep(600 * time.Millisecond)
	close(stop)
	wg.Wait()

	cl := loadfSum(outs)
	t.Logf("clients: status %s codes %s streams %s", loadfMap(cl.byStatus), loadfMap(cl.byCode), loadfMap(cl.byStream))
	for i, p := range cl.problems {
		if i == 10 {
			t.Errorf("... and %d more", len(cl.problems)-i)
			break
		}
		t.Errorf("malformed answer: %s", p)
	}
	loadfCheckBooks(t, g, cl, 0, nil)

	limit := steps[len(steps)-1].cap
	burst := func(n int, hold string) map[int]int {
		codes := map[int]int{}
		var bmu sync.Mutex
		var bwg sync.WaitGroup
		for i := range n {
			bwg.Add(1)
			go func() {
				defer bwg.Done()
				o := loadfCall(c, g.url, "", false, 90000+i, map[string]string{"x-mock-delay": hold})
				bmu.Lock()
				codes[o.status]++
				bmu.Unlock()
			}()
		}
		bwg.Wait()
		return codes
	}
	if ok, why := chaosPoll(5*time.Second, func() (bool, string) {
		codes := burst(limit, "300ms")
		return codes[200] == limit, fmt.Sprintf("a burst of %d (the cap) got %v", limit, codes)
	}); !ok {
		t.Errorf("concurrency slots still taken after the load: %s", why)
	}
	if codes := burst(limit+3, "500ms"); codes[200] != limit || codes[429] != 3 {
		t.Errorf("a burst of %d over a cap of %d got %v: slots were given back twice", limit+3, limit, codes)
	}
}

func TestLoadFaultsReloadLimitsMemory(t *testing.T) { loadfReloadLimits(t, "") }

func TestLoadFaultsReloadLimitsRedis(t *testing.T) {
	loadfReloadLimits(t, loadfRedis(t).URL())
}
