package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// ccFollow is how long replicas may disagree after a change: the router ticks every
// 500ms, so every replica reads a change within a second, and every one of them puts
// it in force 750ms after it was made (later only for one that read it later); the
// rest is slack for a loaded machine running the race detector.
const ccFollow = 1500 * time.Millisecond

// ccStepping is how much longer agree waits while the replicas differ only because the
// canary is stepping on every tick (interval 1ms): each step reaches the others up to a
// tick later, so they may agree only once it has stopped, six ticks at most.
const ccStepping = 6 * 500 * time.Millisecond

// ccConfig is one replica's config: chat split between a stable and a canary
// upstream, sticky by X-User-ID, with limits and canary state shared through Redis.
// The controller ticks every 500ms, so an interval below that steps on every tick
// that saw min_requests canary attempts.
func ccConfig(stable, canary, redisURL, steps string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 2s}
backends:
  stable: {provider: openai, base_url: "http://` + stable + `/v1", model: up-model}
  canary: {provider: openai, base_url: "http://` + canary + `/v1", model: up-model}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: stable, weight: 95}, {backend: canary, weight: 5}]
    sticky: {from: header, name: X-User-ID}
    canary: {backend: canary, steps: [` + steps + `], interval: 1ms, min_requests: 5, max_error_rate: 0.05}
limiter: {store: redis, redis: {url: "` + redisURL + `"}}
logging: {level: info, access_log: false}
`
}

// ccUpstream is a canary upstream that answers from a healthy mockllm until failing
// is set, then from one whose error rate is 1.
type ccUpstream struct {
	addr      string
	failing   atomic.Bool
	good, bad *mockllm.Server
}

func startCCUpstream(t *testing.T) *ccUpstream {
	t.Helper()
	u := &ccUpstream{}
	var err error
	if u.good, err = mockllm.New(mockllm.Options{Model: "up-model", MaxTokens: 2, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if u.bad, err = mockllm.New(mockllm.Options{Model: "up-model", MaxTokens: 2, Seed: 2, ErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	good, bad := u.good.Handler(), u.bad.Handler()
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if u.failing.Load() {
			bad(ctx)
			return
		}
		good(ctx)
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() {
		_ = srv.Shutdown()
		_ = u.good.Shutdown()
		_ = u.bad.Shutdown()
	})
	return u
}

// chats counts the chat requests the upstream received, healthy or failing.
func (u *ccUpstream) chats() int64 {
	return u.good.Stats().Requests["/v1/chat/completions"] + u.bad.Stats().Requests["/v1/chat/completions"]
}

// ccView is GET /admin/endpoints/chat, and the answer of every canary operation.
// parseCCView gives it the weights last decided: the pending ones while a change
// waits for its instant (switch_at), which then keeps the weights in force.
type ccView struct {
	Name           string             `json:"name"`
	Type           string             `json:"type"`
	Override       bool               `json:"override"`
	Note           string             `json:"note"`
	PendingWeights map[string]float64 `json:"pending_weights"`
	SwitchAt       *time.Time         `json:"switch_at"`
	// inForce are the route weights in force, by backend.
	inForce map[string]float64
	Routes  []struct {
		Backend          string  `json:"backend"`
		Variant          string  `json:"variant"`
		ConfiguredWeight int     `json:"configured_weight"`
		Weight           float64 `json:"weight"`
	} `json:"routes"`
	Canary *struct {
		Backend       string    `json:"backend"`
		Variant       string    `json:"variant"`
		State         string    `json:"state"`
		AfterOverride string    `json:"after_override"`
		Weight        float64   `json:"weight"`
		Step          int       `json:"step"`
		Steps         []int     `json:"steps"`
		Reason        string    `json:"reason"`
		WindowStart   time.Time `json:"window_start"`
	} `json:"canary"`
}

func (v ccView) state() string { return v.Canary.State }

func (v ccView) weight(backend string) float64 {
	for _, r := range v.Routes {
		if r.Backend == backend {
			return r.Weight
		}
	}
	return -1
}

// key is the part of the view that every replica shares through Redis.
func (v ccView) key() string {
	return fmt.Sprintf("%s canary=%v stable=%v/%v override=%v since=%s reason=%q", v.Canary.State, v.Canary.Weight,
		v.weight("stable"), v.weight("canary"), v.Override, v.Canary.WindowStart.UTC().Format(time.RFC3339Nano), v.Canary.Reason)
}

var ccStates = []string{"stepping", "paused", "rolled_back", "promoted"}

// parseCCView decodes an endpoint view and checks its shape.
func parseCCView(hdr http.Header, body []byte) (ccView, error) {
	var v ccView
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return v, fmt.Errorf("content-type %q", ct)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return v, fmt.Errorf("not a JSON object: %v: %s", err, body)
	}
	for _, k := range []string{"name", "type", "routes", "override", "canary"} {
		if _, ok := raw[k]; !ok {
			return v, fmt.Errorf("no %q: %s", k, body)
		}
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return v, fmt.Errorf("%v: %s", err, body)
	}
	switch {
	case v.Name != "chat" || v.Type != "chat":
		return v, fmt.Errorf("name %q type %q: %s", v.Name, v.Type, body)
	case len(v.Routes) != 2 || v.Routes[0].Backend != "stable" || v.Routes[1].Backend != "canary":
		return v, fmt.Errorf("routes: %s", body)
	case v.Routes[0].ConfiguredWeight != 95 || v.Routes[1].ConfiguredWeight != 5:
		return v, fmt.Errorf("configured weights: %s", body)
	case v.Routes[0].Weight+v.Routes[1].Weight != 100:
		return v, fmt.Errorf("live weights do not add up to 100: %s", body)
	case v.Canary == nil || v.Canary.Backend != "canary" || v.Canary.Variant != "canary":
		return v, fmt.Errorf("canary: %s", body)
	case !slices.Contains(ccStates, v.Canary.State):
		return v, fmt.Errorf("canary state %q: %s", v.Canary.State, body)
	case v.Canary.Weight != v.Routes[1].Weight:
		return v, fmt.Errorf("canary weight %v but route weight %v: %s", v.Canary.Weight, v.Routes[1].Weight, body)
	case v.Canary.WindowStart.IsZero() || len(v.Canary.Steps) == 0 || v.Canary.Steps[len(v.Canary.Steps)-1] != 100:
		return v, fmt.Errorf("window or steps: %s", body)
	case v.Override != (v.Note != ""):
		return v, fmt.Errorf("override %v with note %q", v.Override, v.Note)
	case v.Override && v.Canary.State != "paused" && v.Canary.State != "rolled_back":
		// A rollback during an override keeps the override (README, "Admin API").
		return v, fmt.Errorf("override with the canary %s: %s", v.Canary.State, body)
	case (v.PendingWeights == nil) != (v.SwitchAt == nil),
		v.PendingWeights != nil && (len(v.PendingWeights) != 2 || v.PendingWeights["stable"]+v.PendingWeights["canary"] != 100):
		return v, fmt.Errorf("pending weights or switch_at: %s", body)
	}
	v.inForce = map[string]float64{}
	for i := range v.Routes {
		r := &v.Routes[i]
		v.inForce[r.Backend] = r.Weight
		if w, ok := v.PendingWeights[r.Variant]; ok {
			r.Weight = w
		}
	}
	v.Canary.Weight = v.Routes[1].Weight
	if v.Canary.State == "rolled_back" && v.Canary.Weight != 0 || v.Canary.State == "promoted" && v.Canary.Weight != 100 {
		return v, fmt.Errorf("%s at %v%%: %s", v.Canary.State, v.Canary.Weight, body)
	}
	return v, nil
}

// parseCCError checks an OpenAI-style error body and returns its code when it is a
// string (an upstream's error passed through may carry a number).
func parseCCError(hdr http.Header, body []byte) (string, error) {
	var e struct {
		Error *struct {
			Message *string         `json:"message"`
			Type    string          `json:"type"`
			Code    json.RawMessage `json:"code"`
		} `json:"error"`
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return "", fmt.Errorf("content-type %q: %s", ct, body)
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || e.Error.Message == nil || *e.Error.Message == "" || e.Error.Type == "" {
		return "", fmt.Errorf("not an OpenAI error body: %s", body)
	}
	var code string
	_ = json.Unmarshal(e.Error.Code, &code)
	return code, nil
}

// ccNode is one gateway replica.
type ccNode struct {
	name string
	g    *gw
	dead atomic.Bool
}

func (n *ccNode) admin(method, path, body string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(method, "http://"+n.g.AdminAddr()+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := ccHTTP.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

func (n *ccNode) view() (ccView, error) {
	status, hdr, body, err := n.admin("GET", "/admin/endpoints/chat", "")
	if err != nil {
		return ccView{}, err
	}
	if status != 200 {
		return ccView{}, fmt.Errorf("status %d: %s", status, body)
	}
	return parseCCView(hdr, body)
}

var ccHTTP = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}

// ccFleet is the set of replicas; clients and operators pick among the live ones.
type ccFleet struct {
	t    *testing.T
	mu   sync.Mutex
	live []*ccNode
	all  []*ccNode
}

func (f *ccFleet) add(n *ccNode) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.live = append(f.live, n)
	f.all = append(f.all, n)
}

func (f *ccFleet) nodes() []*ccNode {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.live)
}

// stop takes n out of the live set, then shuts it down.
func (f *ccFleet) stop(n *ccNode) {
	n.dead.Store(true)
	f.mu.Lock()
	f.live = slices.DeleteFunc(f.live, func(x *ccNode) bool { return x == n })
	f.mu.Unlock()
	n.g.stop()
}

// agree polls every live replica until all report the same shared state and ok
// accepts it, failing the test after within (plus ccStepping while they differ only
// in how far a stepping canary has got); it returns the view agreed on.
func (f *ccFleet) agree(what string, within time.Duration, ok func(ccView) string) ccView {
	f.t.Helper()
	start := time.Now()
	var last string
	for {
		var views []ccView
		var names []string
		bad := ""
		for _, n := range f.nodes() {
			v, err := n.view()
			if err != nil {
				f.t.Fatalf("%s: admin API of %s: %v", what, n.name, err)
			}
			views, names = append(views, v), append(names, n.name)
		}
		same, stepping, settled := true, true, true
		for _, v := range views {
			same = same && v.key() == views[0].key()
			stepping = stepping && v.state() == "stepping"
			settled = settled && v.SwitchAt == nil
		}
		if !same {
			var b strings.Builder
			for i, v := range views {
				fmt.Fprintf(&b, "\n  %s: %s", names[i], v.key())
			}
			bad = "replicas disagree:" + b.String()
		} else if why := ok(views[0]); why != "" {
			bad = why + ": " + views[0].key()
		} else if !settled {
			bad = "a change waits for its instant: " + views[0].key()
		}
		if bad == "" {
			f.t.Logf("%s: agreed after %v on %s", what, time.Since(start).Round(time.Millisecond), views[0].key())
			return views[0]
		}
		last = bad
		limit := within
		if (!same || !settled) && stepping {
			limit += ccStepping
		}
		if time.Since(start) > limit {
			f.t.Fatalf("%s: not within %v: %s", what, limit, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkMetrics compares each live replica's tollgate_route_weight and
// tollgate_canary_state with its admin API. A change the controller made since the
// replicas agreed (a step of a stepping canary) is waited out to its instant first.
func (f *ccFleet) checkMetrics(what string) {
	f.t.Helper()
	for _, n := range f.nodes() {
		var last string
		for try, waits := 0, 0; ; try++ {
			v1, err1 := n.view()
			if err1 == nil && v1.SwitchAt != nil && waits < 4 {
				waits++
				time.Sleep(time.Until(*v1.SwitchAt) + 20*time.Millisecond)
				try--
				continue
			}
			fams, err := promtest.Scrape("http://" + n.g.AdminAddr() + "/metrics")
			v2, err2 := n.view()
			if err1 != nil || err2 != nil || err != nil {
				f.t.Fatalf("%s: %s: %v %v %v", what, n.name, err1, err, err2)
			}
			if v1.key() == v2.key() {
				last = ccMetricsMismatch(fams, v1)
				if last == "" {
					break
				}
			}
			if try == 5 {
				f.t.Errorf("%s: metrics of %s disagree with its admin API: %s", what, n.name, last)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func ccMetricsMismatch(fams map[string]*dto.MetricFamily, v ccView) string {
	if v.SwitchAt != nil {
		// The state in force, which the metrics show, is not in the view.
		return "a change waits for its instant"
	}
	var problems []string
	for _, b := range []string{"stable", "canary"} {
		got, ok := promtest.Sum(fams, "tollgate_route_weight", func(l map[string]string) bool {
			return l["endpoint"] == "chat" && l["backend"] == b
		})
		if !ok || got != v.inForce[b] {
			problems = append(problems, fmt.Sprintf("tollgate_route_weight{backend=%q} = %v (exposed %v), admin says %v", b, got, ok, v.inForce[b]))
		}
	}
	for _, s := range append([]string{"none"}, ccStates...) {
		want := 0.0
		if s == v.state() {
			want = 1
		}
		got, ok := promtest.Sum(fams, "tollgate_canary_state", func(l map[string]string) bool {
			return l["endpoint"] == "chat" && l["state"] == s
		})
		if !ok || got != want {
			problems = append(problems, fmt.Sprintf("tollgate_canary_state{state=%q} = %v (exposed %v), admin says %s", s, got, ok, v.state()))
		}
	}
	return strings.Join(problems, "; ")
}

// ccMark is what holds while it is the current mark: rising while the canary's weight
// may only rise; weights, when set, are the weights every replica agreed on.
type ccMark struct {
	name    string
	rising  bool
	weights map[string]float64
}

type ccObs struct {
	node       string
	canary     bool
	sent, recv time.Time
}

// ccTraffic sends chat requests from sticky users to random live replicas and checks
// every answer.
type ccTraffic struct {
	t     *testing.T
	fleet *ccFleet
	mark  atomic.Pointer[ccMark]
	// seen is, per client, the mark its last request both started and ended under.
	seen  []atomic.Pointer[ccMark]
	done  atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	obs   map[string][]ccObs // per user, requests that began and ended rising
	bad   []string
	codes map[string]int
}

func (tr *ccTraffic) fail(format string, args ...any) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.bad) < 20 {
		tr.bad = append(tr.bad, fmt.Sprintf(format, args...))
	}
}

func (tr *ccTraffic) start(clients, users int, seed uint64) {
	tr.seen = make([]atomic.Pointer[ccMark], clients)
	tr.stop = make(chan struct{})
	tr.obs = map[string][]ccObs{}
	tr.codes = map[string]int{}
	for c := range clients {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(c)))
			for {
				select {
				case <-tr.stop:
					return
				default:
				}
				nodes := tr.fleet.nodes()
				n := nodes[rng.IntN(len(nodes))]
				user := "user-" + strconv.Itoa(rng.IntN(users))
				tr.one(c, n, user)
			}
		}()
	}
}

func (tr *ccTraffic) one(c int, n *ccNode, user string) {
	body := `{"model":"chat","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`
	req, _ := http.NewRequest("POST", n.g.url+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-User-ID", user)
	m1 := tr.mark.Load()
	sent := time.Now()
	resp, err := ccHTTP.Do(req)
	var b []byte
	if err == nil {
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	recv := time.Now()
	m2 := tr.mark.Load()
	if err != nil {
		if !n.dead.Load() {
			tr.fail("%s %s: %v", n.name, user, err)
		}
		return
	}
	backend, variant := resp.Header.Get("X-Tollgate-Backend"), resp.Header.Get("X-Tollgate-Variant")
	// The gateway's own 503 (no target of the backend in service, every one busy)
	// names the backend but no variant: no route served it.
	wantVariant := backend
	tr.mu.Lock()
	tr.codes[strconv.Itoa(resp.StatusCode)+" "+backend]++
	tr.mu.Unlock()
	if resp.Header.Get("X-Request-Id") == "" {
		tr.fail("%s %s: no x-request-id", n.name, user)
	}
	switch {
	case resp.StatusCode == 200:
		var ok struct {
			Choices []json.RawMessage `json:"choices"`
		}
		if json.Unmarshal(b, &ok) != nil || len(ok.Choices) == 0 {
			tr.fail("%s %s: 200 with %s", n.name, user, b)
		}
	case resp.StatusCode >= 500 && backend == "canary", resp.StatusCode == 503 && n.dead.Load():
		code, err := parseCCError(resp.Header, b)
		if err != nil {
			tr.fail("%s %s: %d: %v", n.name, user, resp.StatusCode, err)
		}
		if code == "no_healthy_upstream" || code == "upstream_overloaded" {
			wantVariant = ""
		}
	default:
		tr.fail("%s %s: unexpected %d from %q: %s", n.name, user, resp.StatusCode, backend, b)
	}
	if backend != "" && (backend != "stable" && backend != "canary" || variant != wantVariant) {
		tr.fail("%s %s: backend %q variant %q", n.name, user, backend, variant)
	}
	if m1 != m2 || backend == "" {
		return
	}
	if m1.weights != nil && m1.weights[backend] == 0 {
		tr.fail("%s %s: served by %s at %s, sent %s, while every replica had %s at 0%% (%s)",
			n.name, user, backend, recv.Format("15:04:05.000"), sent.Format("15:04:05.000"), backend, m1.name)
	}
	if m1.rising {
		tr.mu.Lock()
		tr.obs[user] = append(tr.obs[user], ccObs{node: n.name, canary: backend == "canary", sent: sent, recv: recv})
		tr.mu.Unlock()
	}
	tr.seen[c].Store(m1)
	tr.done.Add(1)
}

// setMark makes m the current mark and waits until every client has finished a
// request that began under it, so that no answer planned before is still on its way.
func (tr *ccTraffic) setMark(m *ccMark) {
	tr.t.Helper()
	tr.mark.Store(m)
	deadline := time.Now().Add(5 * time.Second)
	for i := range tr.seen {
		for tr.seen[i].Load() != m {
			if time.Now().After(deadline) {
				tr.t.Fatalf("client %d sent nothing under mark %q in 5s", i, m.name)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// flips lists the users who went back from the canary to stable while its weight
// only rose: on one replica at any time, across replicas later than lag after.
func (tr *ccTraffic) flips(lag time.Duration) (flips []string, users, canaryUsers int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for user, obs := range tr.obs {
		users++
		seenCanary := false
		for _, a := range obs {
			if !a.canary {
				continue
			}
			seenCanary = true
			for _, b := range obs {
				if b.canary {
					continue
				}
				if b.node == a.node && b.sent.After(a.recv) || b.sent.After(a.recv.Add(lag)) {
					flips = append(flips, fmt.Sprintf("%s: canary on %s (answered %s), then stable on %s (sent %s)",
						user, a.node, a.recv.Format("15:04:05.000"), b.node, b.sent.Format("15:04:05.000")))
					break
				}
			}
		}
		if seenCanary {
			canaryUsers++
		}
	}
	slices.Sort(flips)
	return flips, users, canaryUsers
}

// ccOp is one operator call.
type ccOp struct {
	verb           string // pause, resume, promote, rollback, weights
	stable, canary int    // for weights
}

func (o ccOp) String() string {
	if o.verb == "weights" {
		return fmt.Sprintf("weights{stable:%d,canary:%d}", o.stable, o.canary)
	}
	return o.verb
}

// expect is the state an applied op leaves.
func (o ccOp) expect(v ccView) bool {
	switch o.verb {
	case "pause":
		return v.state() == "paused"
	case "resume":
		// A canary an override held at 100 % is promoted by a resume (README:
		// "promoted if it gave it 100 %"), as when the other operator's weights
		// landed first.
		return !v.Override && (v.state() == "stepping" || v.state() == "promoted" && v.Canary.Weight == 100)
	case "promote":
		return v.state() == "promoted" && v.Canary.Weight == 100
	case "rollback":
		return v.state() == "rolled_back" && v.Canary.Weight == 0
	}
	return v.state() == "paused" && v.Override && v.weight("stable") == float64(o.stable) && v.weight("canary") == float64(o.canary)
}

// ccAnswer is an operator call's outcome.
type ccAnswer struct {
	op     ccOp
	node   string
	status int
	code   string
	view   ccView
	err    error
}

func (n *ccNode) operate(op ccOp) ccAnswer {
	a := ccAnswer{op: op, node: n.name}
	var hdr http.Header
	var body []byte
	if op.verb == "weights" {
		a.status, hdr, body, a.err = n.admin("PUT", "/admin/endpoints/chat/weights",
			fmt.Sprintf(`{"stable": %d, "canary": %d}`, op.stable, op.canary))
	} else {
		a.status, hdr, body, a.err = n.admin("POST", "/admin/endpoints/chat/canary/"+op.verb, "")
	}
	if a.err != nil {
		return a
	}
	if a.status == 200 {
		a.view, a.err = parseCCView(hdr, body)
	} else {
		a.code, a.err = parseCCError(hdr, body)
	}
	return a
}

// ccFollows says whether v is what applying answer's state leaves, or where the
// controller may have taken a stepping canary since.
func ccFollows(v, answer ccView) bool {
	if v.key() == answer.key() {
		return true
	}
	return answer.state() == "stepping" && !v.Override &&
		(v.state() == "stepping" || v.state() == "promoted") && v.Canary.Weight >= answer.Canary.Weight
}

// TestCanaryChaosReplicasAgree runs three replicas sharing canary state through one
// Redis while sticky users call all of them. While the canary steps up, one replica
// reloads its config, another reloads one with other steps and the third is stopped
// and replaced: no user goes back from the canary to stable. Then operators pause,
// resume, promote, roll back and override weights on different replicas at once: the
// replicas agree within a second or so after each round, the answers are well-formed
// with documented status codes, the metrics match the admin API and a route at 0 %
// serves nobody. Last the canary upstream starts failing: the gate rolls it back on
// every replica and it gets no more traffic.
// Not t.Parallel: replicas must agree within ccFollow under the load it makes itself.
func TestCanaryChaosReplicasAgree(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	rds := redistest.Start(t)
	_, stable := startMock(t, mockllm.Options{MaxTokens: 2})
	up := startCCUpstream(t)
	const steps, otherSteps = "5, 10, 25, 50, 75, 100", "5, 20, 40, 60, 80, 100"
	cfg := ccConfig(stable, up.addr, rds.URL(), steps)

	fleet := &ccFleet{t: t}
	for _, name := range []string{"a", "b", "c"} {
		fleet.add(&ccNode{name: name, g: startGateway(t, cfg)})
	}
	defer ccHTTP.CloseIdleConnections()
	fleet.agree("start", ccFollow, func(v ccView) string {
		if v.state() != "stepping" || v.Canary.Weight != 5 || v.Override {
			return "want stepping at 5%"
		}
		return ""
	})

	tr := &ccTraffic{t: t, fleet: fleet}
	tr.mark.Store(&ccMark{name: "rising", rising: true})
	tr.start(6, 150, seed)
	stopTraffic := sync.OnceFunc(func() { close(tr.stop); tr.wg.Wait() })
	defer stopTraffic()

	// While the canary steps up, every replica's weight only rises.
	watchStop := make(chan struct{})
	var watchErr []string
	var watchWG sync.WaitGroup
	watchWG.Add(1)
	go func() {
		defer watchWG.Done()
		last := map[string]float64{}
		for {
			select {
			case <-watchStop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			for _, n := range fleet.nodes() {
				v, err := n.view()
				if err != nil {
					if !n.dead.Load() {
						watchErr = append(watchErr, n.name+": "+err.Error())
					}
					continue
				}
				if v.state() != "stepping" && v.state() != "promoted" || v.Canary.Weight < last[n.name] {
					watchErr = append(watchErr, fmt.Sprintf("%s went from %v%% to %s", n.name, last[n.name], v.key()))
				}
				last[n.name] = v.Canary.Weight
			}
		}
	}()

	a, b, c := fleet.all[0], fleet.all[1], fleet.all[2]
	fleet.agree("first step", 5*time.Second, func(v ccView) string {
		if v.Canary.Weight < 10 {
			return "still at the first step"
		}
		return ""
	})
	// The same config again on a, through the admin API.
	if status, _, body, err := a.admin("POST", "/admin/reload", ""); err != nil || status != 200 || !bytes.Contains(body, []byte(`"reloaded"`)) {
		t.Fatalf("reload of a: %d %s %v", status, body, err)
	}
	// Other steps on b, through its watched file.
	writeAtomic(t, b.g.path, ccConfig(stable, up.addr, rds.URL(), otherSteps))
	waitFor(t, func() bool {
		v, err := b.view()
		return err == nil && slices.Equal(v.Canary.Steps, []int{5, 20, 40, 60, 80, 100})
	})
	// c stops; a new replica with its own config file takes its place.
	fleet.stop(c)
	dir := t.TempDir()
	path := filepath.Join(dir, "tollgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &ccNode{name: "d", g: serveConfig(t, path)}
	if v, err := d.view(); err != nil || v.Canary.Weight < 10 {
		t.Errorf("replacement replica starts at %+v (%v), not at the cluster's weight", v.Canary, err)
	}
	fleet.add(d)
	fleet.agree("promoted", 10*time.Second, func(v ccView) string {
		if v.state() != "promoted" {
			return "not promoted yet"
		}
		return ""
	})
	tr.setMark(&ccMark{name: "operators"})
	close(watchStop)
	watchWG.Wait()
	for _, e := range watchErr {
		t.Errorf("while stepping up: %s", e)
	}
	flips, users, canaryUsers := tr.flips(ccFollow)
	t.Logf("stepping up: %d users, %d of them on the canary at some point, %d requests", users, canaryUsers, tr.done.Load())
	if users < 100 || canaryUsers < 20 {
		t.Errorf("too little traffic to judge stickiness: %d users, %d on the canary", users, canaryUsers)
	}
	for i, f := range flips {
		if i == 10 {
			t.Errorf("... and %d more", len(flips)-10)
			break
		}
		t.Errorf("user flipped while the canary's weight only rose: %s", f)
	}

	// Operators act on two replicas at once, SREs scrape every replica meanwhile.
	scrapeStop := make(chan struct{})
	var scrapeWG sync.WaitGroup
	scrapeWG.Add(1)
	go func() {
		defer scrapeWG.Done()
		for {
			select {
			case <-scrapeStop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			for _, n := range fleet.nodes() {
				if resp, err := ccHTTP.Get("http://" + n.g.AdminAddr() + "/metrics"); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}
	}()
	defer func() { close(scrapeStop); scrapeWG.Wait() }()

	verbs := []string{"pause", "resume", "promote", "rollback", "weights"}
	splits := []int{0, 10, 50, 90, 100}
	prev := fleet.agree("before the operators", ccFollow, func(ccView) string { return "" })
	for round := range 6 {
		nodes := fleet.nodes()
		i := rng.IntN(len(nodes))
		j := (i + 1 + rng.IntN(len(nodes)-1)) % len(nodes)
		ops := [2]ccOp{}
		for k := range ops {
			ops[k].verb = verbs[rng.IntN(len(verbs))]
			ops[k].canary = splits[rng.IntN(len(splits))]
			ops[k].stable = 100 - ops[k].canary
		}
		tr.mark.Store(&ccMark{name: "round " + strconv.Itoa(round)})
		var answers [2]ccAnswer
		var wg sync.WaitGroup
		for k, n := range []*ccNode{nodes[i], nodes[j]} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				answers[k] = n.operate(ops[k])
			}()
		}
		wg.Wait()
		what := fmt.Sprintf("round %d (%s on %s, %s on %s, from %s)", round, ops[0], nodes[i].name, ops[1], nodes[j].name, prev.state())
		var applied []ccView
		for k, ans := range answers {
			other := ops[1-k]
			switch {
			case ans.err != nil:
				t.Fatalf("%s: %s on %s: status %d: %v", what, ans.op, ans.node, ans.status, ans.err)
			case ans.status == 200:
				if !ans.op.expect(ans.view) && !(answers[1-k].status == 200 && other.expect(ans.view)) {
					t.Errorf("%s: %s on %s answered %s", what, ans.op, ans.node, ans.view.key())
				}
				applied = append(applied, ans.view)
			case ans.status == 409 && ans.code == "invalid_canary_state":
				// Pausing needs a stepping or paused canary, resuming one that is not
				// promoted; the state may be the other operator's or the controller's.
				// The other operator's resume promotes a canary paused at the last
				// step's weight at once, and leaves one below it stepping, which the
				// controller may promote.
				blocked := map[string][]string{"pause": {"rolled_back", "promoted"}, "resume": {"promoted"}}[ans.op.verb]
				could := slices.Contains(blocked, prev.state()) || prev.state() == "stepping" && slices.Contains(blocked, "promoted") ||
					other.verb == "rollback" && slices.Contains(blocked, "rolled_back") ||
					(other.verb == "promote" || other.verb == "resume") && slices.Contains(blocked, "promoted")
				if !could {
					t.Errorf("%s: %s on %s: 409 that no state allowed", what, ans.op, ans.node)
				}
			case ans.status == 503 && ans.code == "shared_state_unavailable":
				t.Logf("%s: %s on %s: 503 under concurrent updates", what, ans.op, ans.node)
			default:
				t.Errorf("%s: %s on %s: undocumented %d %q", what, ans.op, ans.node, ans.status, ans.code)
			}
		}
		candidates := append(applied, prev)
		prev = fleet.agree(what, ccFollow, func(v ccView) string {
			for _, c := range candidates {
				if ccFollows(v, c) {
					return ""
				}
			}
			return "not the outcome of either operation"
		})
		fleet.checkMetrics(what)
		tr.mark.Store(&ccMark{name: what + " settled", weights: map[string]float64{"stable": prev.weight("stable"), "canary": prev.weight("canary")}})
	}

	// An override at 0 % holds across a reload that leaves the endpoint as it was,
	// and is ended by an operator on another replica: the canary goes back,
	// everywhere, to the state the override interrupted. A stepping one steps again
	// from its start weight; a paused, rolled-back or promoted one is so again.
	held := fleet.agree("before the override", ccFollow, func(ccView) string { return "" })
	nodes := fleet.nodes()
	tr.mark.Store(&ccMark{name: "override"})
	if ans := nodes[0].operate(ccOp{verb: "weights", stable: 100}); ans.err != nil || ans.status != 200 || !ans.op.expect(ans.view) {
		t.Fatalf("override on %s: %d %v %+v", nodes[0].name, ans.status, ans.err, ans.view)
	}
	fleet.agree("override at 0%", ccFollow, func(v ccView) string {
		if !v.Override || v.state() != "paused" || v.Canary.Weight != 0 {
			return "want paused at 0% by override"
		}
		return ""
	})
	fleet.checkMetrics("override at 0%")
	if status, _, body, err := nodes[1].admin("POST", "/admin/reload", ""); err != nil || status != 200 {
		t.Fatalf("reload of %s: %d %s %v", nodes[1].name, status, body, err)
	}
	time.Sleep(ccFollow)
	fleet.agree("override held across a reload", ccFollow, func(v ccView) string {
		if !v.Override || v.state() != "paused" || v.Canary.Weight != 0 {
			return "want paused at 0% by override"
		}
		return ""
	})
	if status, _, body, err := nodes[2].admin("DELETE", "/admin/endpoints/chat/weights", ""); err != nil || status != 200 {
		t.Fatalf("end of the override on %s: %d %s %v", nodes[2].name, status, body, err)
	}
	// The state the override interrupted: the one before it, or the one an earlier
	// override (in the rounds above) interrupted. A canary rolled back while an
	// override held it (an operator's rollback racing the override in a round) names
	// none, and stays as it is.
	st, weight := held.state(), held.Canary.Weight
	if held.Override && held.Canary.AfterOverride != "" {
		st, weight = held.Canary.AfterOverride, -1
	}
	fleet.agree("override ended by operator", ccFollow, func(v ccView) string {
		switch {
		case v.Override:
			return "want the override ended"
		case st == "stepping":
			if v.state() != "stepping" && v.state() != "promoted" || v.Canary.Weight < 5 {
				return "want stepping again from 5%"
			}
		case v.state() != st || weight >= 0 && v.Canary.Weight != weight:
			return "want " + st + " at " + strconv.FormatFloat(weight, 'f', -1, 64) + "% as before the override"
		}
		return ""
	})

	// A rolled-back canary cannot be paused (409), and bad requests change nothing.
	tr.mark.Store(&ccMark{name: "rollback"})
	if ans := nodes[2].operate(ccOp{verb: "rollback"}); ans.err != nil || ans.status != 200 || !ans.op.expect(ans.view) {
		t.Fatalf("rollback on %s: %d %v %+v", nodes[2].name, ans.status, ans.err, ans.view)
	}
	rolled := fleet.agree("rolled back by operator", ccFollow, func(v ccView) string {
		if v.state() != "rolled_back" || v.Canary.Weight != 0 {
			return "want rolled_back"
		}
		return ""
	})
	tr.mark.Store(&ccMark{name: "rolled back by operator", weights: map[string]float64{"stable": 100, "canary": 0}})
	for _, bad := range []struct {
		node         *ccNode
		method, path string
		body         string
		status       int
		code         string
	}{
		{nodes[0], "POST", "/admin/endpoints/chat/canary/pause", "", 409, "invalid_canary_state"},
		{nodes[1], "PUT", "/admin/endpoints/chat/weights", `{"stable": 50, "canary": 40}`, 400, "invalid_weights"},
		{nodes[2], "PUT", "/admin/endpoints/chat/weights", `{"stable": 50, "other": 50}`, 400, "invalid_weights"},
		{nodes[0], "POST", "/admin/endpoints/chat/canary/restart", "", 404, "unknown_verb"},
		{nodes[1], "POST", "/admin/endpoints/nope/canary/pause", "", 404, "endpoint_not_found"},
	} {
		status, hdr, body, err := bad.node.admin(bad.method, bad.path, bad.body)
		if err != nil {
			t.Fatal(err)
		}
		code, perr := parseCCError(hdr, body)
		if status != bad.status || code != bad.code || perr != nil {
			t.Errorf("%s %s %s on %s: %d %q (%v), want %d %q", bad.method, bad.path, bad.body, bad.node.name, status, code, perr, bad.status, bad.code)
		}
	}
	fleet.agree("after refused operations", ccFollow, func(v ccView) string {
		if v.key() != rolled.key() {
			return "changed by a refused operation"
		}
		return ""
	})
	fleet.checkMetrics("rolled back by operator")

	// The canary at 50 % turns bad: the gate rolls it back on every replica.
	tr.mark.Store(&ccMark{name: "resume at 50%"})
	if ans := nodes[0].operate(ccOp{verb: "weights", stable: 50, canary: 50}); ans.err != nil || ans.status != 200 {
		t.Fatalf("override on %s: %d %v", nodes[0].name, ans.status, ans.err)
	}
	fleet.agree("paused at 50%", ccFollow, func(v ccView) string {
		if v.state() != "paused" || v.Canary.Weight != 50 {
			return "want paused at 50%"
		}
		return ""
	})
	// It steps on from 50 %, and turns bad at once.
	if ans := nodes[1].operate(ccOp{verb: "resume"}); ans.err != nil || ans.status != 200 || !ans.op.expect(ans.view) || ans.view.Canary.Weight != 50 {
		t.Fatalf("resume on %s: %d %v %+v", nodes[1].name, ans.status, ans.err, ans.view.Canary)
	}
	up.failing.Store(true)
	failedAt := time.Now()
	gated := fleet.agree("rolled back by the gate", 5*time.Second, func(v ccView) string {
		if v.state() != "rolled_back" || v.Canary.Weight != 0 || !strings.Contains(v.Canary.Reason, "error rate") {
			return "want rolled_back for its error rate"
		}
		return ""
	})
	t.Logf("the gate rolled the canary back %v after it turned bad: %s", time.Since(failedAt).Round(time.Millisecond), gated.Canary.Reason)
	tr.setMark(&ccMark{name: "rolled back by the gate", weights: map[string]float64{"stable": 100, "canary": 0}})
	before, done := up.chats(), tr.done.Load()
	waitFor(t, func() bool { return tr.done.Load() > done+300 })
	if after := up.chats(); after != before {
		t.Errorf("the rolled-back canary got %d requests", after-before)
	}
	fleet.checkMetrics("rolled back by the gate")
	stopTraffic()

	leaders := 0
	waitFor(t, func() bool {
		leaders = 0
		for _, n := range fleet.nodes() {
			status, _, body, err := n.admin("GET", "/admin/endpoints", "")
			var list struct {
				Endpoints []json.RawMessage `json:"endpoints"`
				Leader    *bool             `json:"leader"`
			}
			if err != nil || status != 200 || json.Unmarshal(body, &list) != nil || list.Leader == nil || len(list.Endpoints) != 1 {
				t.Fatalf("GET /admin/endpoints on %s: %d %s %v", n.name, status, body, err)
			}
			if *list.Leader {
				leaders++
			}
		}
		return leaders == 1
	})

	tr.mu.Lock()
	t.Logf("answers: %v", tr.codes)
	for _, e := range tr.bad {
		t.Errorf("client: %s", e)
	}
	tr.mu.Unlock()
	warned := false
	for _, n := range fleet.all {
		logs := n.g.logs.String()
		if strings.Contains(logs, "panic") {
			t.Errorf("%s logged a panic:\n%s", n.name, logs)
		}
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, `"WARN"`) && strings.Contains(line, `"event":"rollback"`) && strings.Contains(line, "error rate") {
				warned = true
			}
		}
	}
	if !warned {
		t.Errorf("no replica logged the gate's rollback as a warning")
	}
}

// TestCanaryChaosRepeatedOperation operates the canary on one replica and at once the
// same way on another, before that one's next tick: the second call finds the shared
// state already where it asks for, and its answer must show that state, not the one
// its replica held before.
// Not t.Parallel: the second call must reach b before b's next tick (500 ms).
func TestCanaryChaosRepeatedOperation(t *testing.T) {
	rds := redistest.Start(t)
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	cfg := ccConfig(up, up, rds.URL(), "5, 10, 25, 50, 75, 100")
	fleet := &ccFleet{t: t}
	for _, name := range []string{"a", "b"} {
		fleet.add(&ccNode{name: name, g: startGateway(t, cfg)})
	}
	defer ccHTTP.CloseIdleConnections()
	a, b := fleet.all[0], fleet.all[1]
	fleet.agree("start", ccFollow, func(v ccView) string {
		if v.state() != "stepping" || v.Canary.Weight != 5 {
			return "want stepping at 5%"
		}
		return ""
	})
	for _, step := range []struct{ before, verb, want string }{
		{"rollback", "resume", "stepping"},
		{"resume", "pause", "paused"},
		{"", "promote", "promoted"},
		{"", "rollback", "rolled_back"},
	} {
		if step.before != "" {
			if ans := a.operate(ccOp{verb: step.before}); ans.err != nil || ans.status != 200 {
				t.Fatalf("%s on a: %d %v", step.before, ans.status, ans.err)
			}
			fleet.agree(step.before, ccFollow, func(ccView) string { return "" })
		}
		first, second := a.operate(ccOp{verb: step.verb}), b.operate(ccOp{verb: step.verb})
		for _, ans := range []ccAnswer{first, second} {
			if ans.err != nil || ans.status != 200 {
				t.Fatalf("%s on %s: %d %v", step.verb, ans.node, ans.status, ans.err)
			}
			if ans.view.state() != step.want {
				t.Errorf("%s on %s right after the same on a: answered %s, want %s", step.verb, ans.node, ans.view.key(), step.want)
			}
		}
		fleet.agree(step.verb, ccFollow, func(v ccView) string {
			if v.state() != step.want {
				return "want " + step.want
			}
			return ""
		})
	}
}
