package tracing

import (
	"context"
	"testing"
)

// TestSetServiceTierAndWebSearches: openai.response.service_tier names the tier the
// answer names, as given (a tier not among the known ones too), and
// tollgate.web_search.requests the searches run; neither is recorded when the answer
// names no tier or ran no search.
func TestSetServiceTierAndWebSearches(t *testing.T) {
	cases := []struct {
		name     string
		tier     string
		searches int64
		want     map[string]any
		absent   []string
	}{
		{"default, two searches", "default", 2, map[string]any{"openai.response.service_tier": "default", "tollgate.web_search.requests": int64(2)}, nil},
		{"priority", "priority", 0, map[string]any{"openai.response.service_tier": "priority"}, []string{"tollgate.web_search.requests"}},
		{"a tier of no list", "reserved_v2", 0, map[string]any{"openai.response.service_tier": "reserved_v2"}, nil},
		{"not UTF-8", "fl\xffx", 0, map[string]any{"openai.response.service_tier": "fl\uFFFDx"}, nil},
		{"none", "", 0, nil, []string{"openai.response.service_tier", "tollgate.web_search.requests"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr, exp := newTestTracing(t, Config{})
			_, span := tr.Start(context.Background(), UpstreamSpec("chat", "anthropic", "claude", "b", "http://10.0.0.1:8000/v1"))
			buf := []byte(c.tier)
			SetServiceTier(span, buf)
			SetWebSearches(span, c.searches)
			// The tier may view a buffer the request reuses.
			for i := range buf {
				buf[i] = 'x'
			}
			span.End()
			checkAttrs(t, attrs(spanNamed(t, exported(t, tr, exp), "chat claude").Attributes), c.want, c.absent)
		})
	}
}
