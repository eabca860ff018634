package gateway

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// failoverCap is the concurrency cap the failover tests run at: their clients keep
// that many requests in flight.
const failoverCap = 8

// failoverConfig has keys whose concurrency and token buckets live in the Redis Cluster
// at addrs.
func failoverConfig(up string, addrs []string) string {
	var keys strings.Builder
	for _, name := range failoverKeys() {
		keys.WriteString("    - {name: " + name + ", key: sk-" + name + "}\n")
	}
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 5s}
auth:
  keys:
` + keys.String() + `backends:
  up: {provider: openai, base_url: "http://` + up + `/v1", model: up-model, timeout: 20s}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: up}]
    limits:
      - {per: api_key, concurrency: ` + strconv.Itoa(failoverCap) + `}
      - {per: api_key, tokens: 1000000, window: day}
limiter: {redis: {addrs: ["` + strings.Join(addrs, `", "`) + `"]}, timeout: 500ms, concurrency_lease: 20s}
logging: {level: info, format: json}
`
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id, addr, master string
	primary          bool
	slots            [][2]int
}

// clusterNodes reads CLUSTER NODES at addr.
func clusterNodes(t *testing.T, addr string) []clusterNode {
	t.Helper()
	out, err := redistest.Command(addr, "CLUSTER", "NODES")
	if err != nil {
		t.Fatal(err)
	}
	var ns []clusterNode
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		n := clusterNode{id: f[0], addr: strings.Split(f[1], "@")[0], master: f[3], primary: strings.Contains(f[2], "master")}
		for _, r := range f[8:] {
			a, b, ok := strings.Cut(r, "-")
			if !ok {
				b = a
			}
			lo, _ := strconv.Atoi(a)
			hi, _ := strconv.Atoi(b)
			n.slots = append(n.slots, [2]int{lo, hi})
		}
		ns = append(ns, n)
	}
	return ns
}

// holds is whether n serves slot.
func (n clusterNode) holds(slot int) bool {
	for _, r := range n.slots {
		if slot >= r[0] && slot <= r[1] {
			return true
		}
	}
	return false
}

// inUse is the key's concurrency slots in use, as g's admin API reads them.
func inUse(t *testing.T, g *gw, key string) int64 {
	t.Helper()
	status, _, out := adminRaw(t, "GET", "http://"+g.AdminAddr()+"/admin/keys/"+key, "", nil)
	if status != 200 {
		t.Fatalf("admin keys: %d %v", status, out)
	}
	b, _ := json.Marshal(out["limits"])
	var ls []limitView
	_ = json.Unmarshal(b, &ls)
	for _, l := range ls {
		if l.Kind == "concurrency" && l.InUse != nil {
			return *l.InUse
		}
	}
	t.Fatalf("no concurrency in_use: %s", b)
	return 0
}

// runClusterFailover keeps failoverCap requests of one key in flight through two
// gateways on a Redis Cluster with a replica per shard, and has CLUSTER FAILOVER
// promote the replica of the shard holding tg:{replicas} (mode 1) or of the shard
// holding the key's concurrency slots, another one (mode 2). No request fails or is
// refused, the slots are all free a moment after the traffic stops, no settlement is
// dropped and the tokens charged are those answered.
func runClusterFailover(t *testing.T, mode int) {
	t.Parallel()
	addrs := redistest.StartClusterReplicas(t, 3)
	_, up := startMock(t, mockllm.Options{MaxTokens: 8, TTFT: 40 * time.Millisecond, TPOT: 5 * time.Millisecond, Seed: 1})
	gws := []*gw{startGateway(t, failoverConfig(up, addrs[:3])), startGateway(t, failoverConfig(up, addrs[:3]))}
	body := `{"model":"chat","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`
	replSlot, _ := redistest.Command(addrs[0], "CLUSTER", "KEYSLOT", "tg:{replicas}")
	rs, _ := strconv.Atoi(replSlot)
	nodes := clusterNodes(t, addrs[0])
	var replShard string
	for _, n := range nodes {
		if n.primary && n.holds(rs) {
			replShard = n.id
		}
	}
	seen := map[string]bool{}
	apiKey, concShard := "", ""
	for _, name := range failoverKeys() {
		if apiKey != "" {
			break
		}
		h := map[string]string{"Authorization": "Bearer sk-" + name}
		if resp, b := contractPost(t, gws[0], "/v1/chat/completions", body, h); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		for _, n := range nodes {
			if !n.primary {
				continue
			}
			// The key's buckets share its hash tag, so its slot: the tokens bucket
			// stays after the request, where the concurrency set may be gone with its
			// release already.
			keys, _ := redistest.Command(n.addr, "KEYS", "tg:{*")
			for _, k := range strings.Split(keys, "\n") {
				tag, _, _ := strings.Cut(k, "}")
				if k != "" && k != "tg:{replicas}" && !seen[tag] {
					seen[tag] = true
					if mode == 1 && n.id == replShard || mode == 2 && n.id != replShard {
						if apiKey == "" {
							apiKey, concShard = name, n.id
							t.Logf("key %s: its buckets' key %q on %s", name, k, n.addr)
						}
					}
				}
			}
		}
	}
	if apiKey == "" {
		t.Fatalf("no api key's buckets where wanted")
	}
	hdr := map[string]string{"Authorization": "Bearer sk-" + apiKey}
	t.Logf("mode %d: tg:{replicas} slot %d on %s; concurrency key's shard %s", mode, rs, replShard, concShard)
	target := concShard
	var replica string
	for _, n := range nodes {
		if !n.primary && n.master == target {
			replica = n.addr
		}
	}
	var stop atomic.Bool
	var mu sync.Mutex
	statuses := map[int]int{}
	var bad []string
	var tokens atomic.Int64
	var wg sync.WaitGroup
	for _, g := range gws {
		for range failoverCap / 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					resp, b := contractPost(t, g, "/v1/chat/completions", body, hdr)
					mu.Lock()
					statuses[resp.StatusCode]++
					if resp.StatusCode != 200 && len(bad) < 10 {
						bad = append(bad, strconv.Itoa(resp.StatusCode)+" "+b)
					}
					mu.Unlock()
					var ans struct {
						Usage struct {
							Total int64 `json:"total_tokens"`
						} `json:"usage"`
					}
					if json.Unmarshal([]byte(b), &ans) == nil {
						tokens.Add(ans.Usage.Total)
					}
				}
			}()
		}
	}
	time.Sleep(1500 * time.Millisecond)
	{
		if _, err := redistest.Command(replica, "CLUSTER", "FAILOVER"); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		for {
			info, _ := redistest.Command(replica, "INFO", "replication")
			if strings.Contains(info, "role:master") {
				break
			}
			if time.Since(t0) > 10*time.Second {
				t.Fatalf("no promotion")
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("promoted after %v", time.Since(t0))
	}
	time.Sleep(4 * time.Second)
	stop.Store(true)
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("answers %v; the first not 200: %q", statuses, bad)
	}
	waitFor(t, func() bool { return inUse(t, gws[0], apiKey) == 0 && inUse(t, gws[1], apiKey) == 0 })
	_, _, out := adminRaw(t, "GET", "http://"+gws[0].AdminAddr()+"/admin/keys/"+apiKey, "", nil)
	lj, _ := json.Marshal(out["limits"])
	var ls []limitView
	_ = json.Unmarshal(lj, &ls)
	for _, l := range ls {
		if l.Kind != "tokens" || l.Remaining == nil {
			continue
		}
		rem, _ := l.Remaining.Int64()
		// Charged: what was answered and the warm-up's, less the refill since
		// (1,000,000 a day, under 12 a second).
		if used := 1_000_000 - rem; used > tokens.Load()+100 || used < tokens.Load()-400 {
			t.Errorf("tokens charged %d, answered %d", used, tokens.Load())
		}
	}
	for i, g := range gws {
		if v := scrapeSeries(t, g)["tollgate_limiter_settlements_dropped_total{}"]; v != 0 {
			t.Errorf("gateway %d dropped %v settlements", i, v)
		}
	}
}

func TestClusterFailoverReplicasShard(t *testing.T) { runClusterFailover(t, 1) }
func TestClusterFailoverOtherShard(t *testing.T)    { runClusterFailover(t, 2) }

// failoverKeys are the client keys of failoverConfig: enough that one's concurrency
// key lands on the shard a run wants (a third of them on each, by their hash tags)
// but for a chance of (2/3)^24.
func failoverKeys() []string {
	names := make([]string, 24)
	for i := range names {
		names[i] = "team-" + strconv.Itoa(i)
	}
	return names
}
