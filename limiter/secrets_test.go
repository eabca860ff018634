package limiter

import (
	"strings"
	"testing"
)

// Redis URL validation must never quote the password, however the URL is mangled.
func TestSecretsRedisURLProblem(t *testing.T) {
	for _, c := range []struct{ url, secret string }{
		{"redis://:Pw9Secret/x+Y@redis:6379/0", "Pw9Secret"},
		{"redis://default:Pw9Secret#frag@redis:6379/0", "Pw9Secret"},
		{"redis://default:Pw9Secret?x@redis:6379/0", "Pw9Secret"},
		{"redis://default:Pw9Secret@redis:6379/Pw9Secret", "Pw9Secret"},
		{"redis://default:Pw9Secret@redis:6379/0?Pw9Secret=1", "Pw9Secret"},
		// the scheme left out, a password holding a colon: url.Parse takes what comes
		// before the colon as the scheme, and go-redis quotes the scheme.
		{"Pw9Secret:tail@redis:6379", "Pw9Secret"},
		{"redis://default:Pw9 Secret@redis:6379", "Pw9"},
		{"redis://default:Pw9%zzSecret@redis:6379", "Pw9"},
	} {
		r := RedisConfig{URL: c.url}
		err := r.Validate()
		if err == nil {
			t.Logf("%s: accepted", c.url)
			continue
		}
		t.Logf("%s -> %v", c.url, err)
		if strings.Contains(strings.ToLower(err.Error()), strings.ToLower(c.secret)) {
			t.Errorf("redis.url %q: problem quotes the password: %v", c.url, err)
		}
	}
}
