package gateway

import (
	"testing"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// A spend budget never used reads full and no more (redis store; $1000 an hour and
// $20,000 a month): Redis's float slack is not counted as dollars above the limit.
func TestAdminKeysUnusedBudgetReadsFull(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 16, Seed: 11})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", admin_token: "admtok", shutdown_grace: 5s}
backends:
  paid: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, timeout: 20s,
         pricing: {input_per_million: 2.5, output_per_million: 10}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: paid}]}
auth:
  mode: keys
  keys:
    - {name: platform, key: sk-platform-0123456, limits: [{per: api_key, usd: 1000, window: hour}]}
limiter: {store: redis, redis: {url: "`+redistest.Start(t).URL()+`"}}
logging: {level: error, access_log: false}
`)
	l := viewKey(t, g, "platform").find(t, "key", "", "api_key", "usd")
	if l.Remaining == nil || string(*l.Remaining) != "1000" || l.Limit != "1000" {
		rem := "null"
		if l.Remaining != nil {
			rem = string(*l.Remaining)
		}
		t.Errorf("got remaining %s of a limit of %s (source %s) for a budget never used, want remaining 1000 of 1000", rem, l.Limit, l.Source)
	}
}
