package gateway

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// drainOutcome is what one client saw of one call.
type drainOutcome struct {
	stream  bool
	status  int    // 0: no answer at all (transport error)
	outcome string // streams answered 200: done, cut, bad, timeout
	code    string // error answers: the error code
	in, out int64  // the usage the client saw
	problem string // what was malformed, if anything
	id      string
	at      time.Time // when the call was sent
}

// drainUsage is the usage member of an answer or a stream's usage chunk.
type drainUsage struct {
	Usage *struct {
		Prompt     int64 `json:"prompt_tokens"`
		Completion int64 `json:"completion_tokens"`
	} `json:"usage"`
}

// drainCall sends one chat call (a stream with include_usage, or a plain call) and
// checks and tallies what comes back.
func drainCall(c *http.Client, url, key string, stream bool, i int, hdr map[string]string) drainOutcome {
	o := drainOutcome{stream: stream, at: time.Now()}
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
			drainUsage
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
		var u drainUsage
		if json.Unmarshal([]byte(data), &u) == nil && u.Usage != nil && u.Usage.Prompt+u.Usage.Completion > 0 {
			o.in, o.out = u.Usage.Prompt, u.Usage.Completion
		}
	}
	return o
}

// drainTally sums outcomes: by status, by stream outcome, and the tokens seen.
type drainTally struct {
	byStatus map[string]int
	byStream map[string]int
	byCode   map[string]int
	in, out  int64
	problems []string
	total    int
}

func drainSum(outs []drainOutcome) drainTally {
	t := drainTally{byStatus: map[string]int{}, byStream: map[string]int{}, byCode: map[string]int{}}
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

// drainMetrics is what the gateway's metrics say of the endpoint.
type drainMetrics struct {
	byCode       map[string]int
	streamErrors int
	in, out      int64
	inFlight     float64
}

func drainFromFamilies(fams map[string]*dto.MetricFamily, endpoint string) drainMetrics {
	m := drainMetrics{byCode: map[string]int{}}
	ep := func(l map[string]string) bool { return l["endpoint"] == endpoint }
	if fam := fams["tollgate_requests_total"]; fam != nil {
		for _, s := range fam.Metric {
			labels := map[string]string{}
			for _, l := range s.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if ep(labels) {
				m.byCode[labels["code"]] += int(s.Counter.GetValue())
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

// drainGather reads the gateway's registry directly (it outlives the listeners).
func drainGather(t *testing.T, g *gw, endpoint string) drainMetrics {
	t.Helper()
	list, err := g.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	fams := map[string]*dto.MetricFamily{}
	for _, f := range list {
		fams[f.GetName()] = f
	}
	return drainFromFamilies(fams, endpoint)
}

// drainAccess counts the access log's request lines of an endpoint by status.
func drainAccess(logs, endpoint string) (map[string]int, int) {
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

func drainMap(m map[string]int) string {
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

// drainConfig is a gateway in front of backend a or b, with a concurrency and a
// token limit on chat.
func drainConfig(a, b, route string, concurrency int) string {
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

// TestShutdownDrainRefusalsCounted stops the gateway while 60 streams run, 30 clients
// keep sending plain calls on their kept-alive connections, and 5 clients are half
// way through sending a request (its header sent, its body not yet). The streams must
// all finish whole (the grace is long enough), every call answered must be one
// well-formed answer, and the metrics and the access log must each count every
// answer once (README: "Every request on the API listener is counted in
// tollgate_requests_total and has an access log line").
func TestShutdownDrainRefusalsCounted(t *testing.T) {
	mock, up := startMock(t, mockllm.Options{Model: "up-model", MaxTokens: 12, TTFT: 2 * time.Millisecond, TPOT: 60 * time.Millisecond, Seed: 5})
	g := startGateway(t, drainConfig(up, up, "a", 500))
	tr := &http.Transport{MaxIdleConnsPerHost: 200}
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)

	var mu sync.Mutex
	var outs []drainOutcome
	add := func(o drainOutcome) {
		mu.Lock()
		outs = append(outs, o)
		mu.Unlock()
	}
	// Five clients send a request's header now and its body during the drain.
	body := `{"model":"chat","max_tokens":4,"messages":[{"role":"user","content":"late body"}]}`
	type half struct {
		conn net.Conn
		br   *bufio.Reader
	}
	var halves []half
	for range 5 {
		conn, br := dialGateway(t, g)
		raw := rawRequest(t, g, body)
		if _, err := io.WriteString(conn, raw[:len(raw)-len(body)]); err != nil {
			t.Fatal(err)
		}
		halves = append(halves, half{conn, br})
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			add(drainCall(c, g.url, "", true, w, nil))
		}()
	}
	waitFor(t, func() bool { return mock.Stats().Running >= 60 })
	var plain sync.WaitGroup
	for w := range 30 {
		wg.Add(1)
		plain.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				o := drainCall(c, g.url, "", false, 1000+w*100+i, map[string]string{"x-mock-delay": "20ms"})
				add(o)
				if i == 0 {
					plain.Done()
				}
				if o.status == 0 {
					return // the gateway is gone: no answer, and none counted
				}
			}
		}()
	}
	plain.Wait()
	g.cancel()
	// The gateway drains (readyz says so); the half-sent requests are completed now.
	waitFor(t, func() bool {
		resp, err := http.Get("http://" + g.AdminAddr() + "/readyz")
		if err != nil {
			return true
		}
		resp.Body.Close()
		return resp.StatusCode == 503
	})
	for _, h := range halves {
		if _, err := io.WriteString(h.conn, body); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range halves {
		o := drainOutcome{status: 0}
		resp, err := http.ReadResponse(h.br, nil)
		if err != nil {
			o.problem = "no answer: " + err.Error()
		} else {
			b, err := io.ReadAll(resp.Body)
			o.status, o.id = resp.StatusCode, resp.Header.Get("X-Request-Id")
			switch {
			case err != nil:
				o.problem = err.Error()
			case resp.StatusCode != 200:
				_, o.code, _, _, err = openAIErrorBody(b)
				if err != nil {
					o.problem = err.Error()
				}
			}
			var u drainUsage
			if resp.StatusCode == 200 && json.Unmarshal(b, &u) == nil && u.Usage != nil {
				o.in, o.out = u.Usage.Prompt, u.Usage.Completion
			}
		}
		add(o)
	}
	select {
	case err := <-g.done:
		g.done <- err
	case <-time.After(15 * time.Second):
		t.Fatal("the gateway did not stop")
	}
	close(stop)
	wg.Wait()

	cl := drainSum(outs)
	t.Logf("clients: status %s codes %s streams %s", drainMap(cl.byStatus), drainMap(cl.byCode), drainMap(cl.byStream))
	if cl.byStream["done"] != 60 {
		t.Errorf("%d of the 60 streams running at the shutdown finished whole (%s)", cl.byStream["done"], drainMap(cl.byStream))
	}
	for _, p := range cl.problems {
		if strings.HasPrefix(p, "no answer") {
			if !strings.Contains(p, "connection refused") {
				t.Logf("%s", p)
			}
			continue // a connection refused or closed idle: the gateway never answered
		}
		t.Errorf("malformed answer: %s", p)
	}
	// Every answer is counted, whatever endpoint label it got.
	list, err := g.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counted := map[string]int{}
	for _, f := range list {
		if f.GetName() != "tollgate_requests_total" {
			continue
		}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == "code" {
					counted[l.GetValue()] += int(m.Counter.GetValue())
				}
			}
		}
	}
	// The access log has a line for every answer the clients got (one more may be
	// an answer written to a connection the client was closing), and the metrics
	// count every line.
	logged, n := drainAccess(g.logs.String(), "")
	for k, v := range cl.byStatus {
		if k != "0" && logged[k] < v {
			t.Errorf("access log: %d lines, by status %s; the clients got %s", n, drainMap(logged), drainMap(cl.byStatus))
			break
		}
	}
	if drainMap(counted) != drainMap(logged) {
		t.Errorf("tollgate_requests_total by code: %s; the access log has %s (the clients got %s, codes %s)",
			drainMap(counted), drainMap(logged), drainMap(cl.byStatus), drainMap(cl.byCode))
	}
	if m := drainGather(t, g, "chat"); m.inFlight != 0 {
		t.Errorf("tollgate_in_flight_requests{endpoint=chat} = %v after the shutdown", m.inFlight)
	}
}
