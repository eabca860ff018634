package gateway

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// TestShutdownDrainRefusalsCounted stops the gateway while 60 streams run, 30 clients
// keep sending plain calls on their kept-alive connections, and 5 clients are half
// way through sending a request (its header sent, its body not yet). The streams must
// all finish whole (the grace is long enough), every call answered must be one
// well-formed answer, and the metrics and the access log must each count every
// answer once (README: "Every request on the API listener is counted in
// tollgate_requests_total and has an access log line").
// Not t.Parallel: its 90 clients load the machine as the load-faults tests do.
func TestShutdownDrainRefusalsCounted(t *testing.T) {
	mock, up := startMock(t, mockllm.Options{Model: "up-model", MaxTokens: 12, TTFT: 2 * time.Millisecond, TPOT: 60 * time.Millisecond, Seed: 5})
	g := startGateway(t, loadfConfig(up, up, "a", 500))
	tr := &http.Transport{MaxIdleConnsPerHost: 200}
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)

	var mu sync.Mutex
	var outs []loadfOutcome
	add := func(o loadfOutcome) {
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
			add(loadfCall(c, g.url, "", true, w, nil))
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
				o := loadfCall(c, g.url, "", false, 1000+w*100+i, map[string]string{"x-mock-delay": "20ms"})
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
		o := loadfOutcome{status: 0}
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
			var u loadfUsage
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

	cl := loadfSum(outs)
	t.Logf("clients: status %s codes %s streams %s", loadfMap(cl.byStatus), loadfMap(cl.byCode), loadfMap(cl.byStream))
	if cl.byStream["done"] != 60 {
		t.Errorf("%d of the 60 streams running at the shutdown finished whole (%s)", cl.byStream["done"], loadfMap(cl.byStream))
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
				// The usual codes exist at 0 from the start: only counts are compared.
				if v := int(m.Counter.GetValue()); l.GetName() == "code" && v > 0 {
					counted[l.GetValue()] += v
				}
			}
		}
	}
	// The access log has a line for every answer the clients got (one more may be
	// an answer written to a connection the client was closing), and the metrics
	// count every line.
	logged, n := loadfAccess(g.logs.String(), "")
	for k, v := range cl.byStatus {
		if k != "0" && logged[k] < v {
			t.Errorf("access log: %d lines, by status %s; the clients got %s", n, loadfMap(logged), loadfMap(cl.byStatus))
			break
		}
	}
	if loadfMap(counted) != loadfMap(logged) {
		t.Errorf("tollgate_requests_total by code: %s; the access log has %s (the clients got %s, codes %s)",
			loadfMap(counted), loadfMap(logged), loadfMap(cl.byStatus), loadfMap(cl.byCode))
	}
	if m := loadfGather(t, g, "chat"); m.inFlight != 0 {
		t.Errorf("tollgate_in_flight_requests{endpoint=chat} = %v after the shutdown", m.inFlight)
	}
}
