package main

import (
	"context"
	"encoding/json"
	"net"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
	"github.com/valyala/fasthttp"
	"gopkg.in/yaml.v3"
)

// Each kind's answer is told by its own member (a message by its type and usage): a
// 200 of another kind, or one with the member only nested, is no answer of this one
// (it counts as bad body).
func TestAnswerMemberTellsKinds(t *testing.T) {
	answers := map[reqKind]string{
		kindChat:       `{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"alpha"}}]}`,
		kindEmbeddings: `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.6,0.8]}]}`,
		kindResponses:  `{"id":"resp_1","object":"response","status":"completed","output":[]}`,
		kindRerank:     rerankAnswer,
		kindMessages:   messageAnswer,
	}
	for k, body := range answers {
		for other, obody := range answers {
			t.Run(k.String()+" answer as "+other.String(), func(t *testing.T) {
				if got, want := isAnswer(k, []byte(obody)), k == other; got != want {
					t.Fatalf("a %s answer checked as a %s answer: %v", other, k, got)
				}
			})
		}
		t.Run(k.String()+" cut short", func(t *testing.T) {
			if isAnswer(k, []byte(body[:len(body)-2])) {
				t.Fatal("a cut answer passed")
			}
		})
	}
	if answerMember(kindStream) != "choices" {
		t.Fatalf("stream kind's member %q", answerMember(kindStream))
	}
	t.Run("rerank results nested only", func(t *testing.T) {
		if hasMember([]byte(`{"id":"rerank-1","data":{"results":[]}}`), "results") {
			t.Fatal("nested results passed")
		}
	})
}

// The rerank load's body is what mockllm (vLLM's API) takes: a query, 8 documents and
// top_n 3, so every answer is the 3 best of 8, ranked; the load counts them all as
// answers, none failed.
func TestRerankLoadAgainstMockllm(t *testing.T) {
	srv, err := mockllm.New(mockllm.Options{Model: mockModel})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	addr := ln.Addr().String()

	var in struct {
		Query     string   `json:"query"`
		Documents []string `json:"documents"`
		TopN      int      `json:"top_n"`
	}
	if err := json.Unmarshal(requestBody(kindRerank, mockModel, 16), &in); err != nil {
		t.Fatal(err)
	}
	if in.Query == "" || len(in.Documents) != 8 || in.TopN != 3 {
		t.Fatalf("body: query %q, %d documents, top_n %d; want a query, 8 documents, top_n 3", in.Query, len(in.Documents), in.TopN)
	}

	tg := &target{Name: pathDirect, Addr: addr, Model: mockModel}
	if err := probe(tg, kindRerank, 16); err != nil {
		t.Fatal(err)
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.SetRequestURI("http://" + addr + requestPath(kindRerank))
	req.SetBody(requestBody(kindRerank, mockModel, 16))
	if err := fasthttp.Do(req, resp); err != nil {
		t.Fatal(err)
	}
	var out struct {
		Usage struct {
			TotalTokens int `json:"total_tokens"`
		} `json:"usage"`
		Results []struct {
			Index          int     `json:"index"`
			RelevanceScore float64 `json:"relevance_score"`
		} `json:"results"`
	}
	if err := json.Unmarshal(resp.Body(), &out); err != nil || resp.StatusCode() != fasthttp.StatusOK {
		t.Fatalf("status %d, %v: %s", resp.StatusCode(), err, resp.Body())
	}
	if !hasMember(resp.Body(), answerMember(kindRerank)) {
		t.Fatalf("mockllm's answer fails the check: %s", resp.Body())
	}
	if len(out.Results) != 3 || out.Usage.TotalTokens == 0 {
		t.Fatalf("%d results, %d tokens; want the top 3: %s", len(out.Results), out.Usage.TotalTokens, resp.Body())
	}
	for i, r := range out.Results {
		if r.Index < 0 || r.Index >= 8 || i > 0 && r.RelevanceScore > out.Results[i-1].RelevanceScore {
			t.Fatalf("results not 3 of the 8 documents, best first: %s", resp.Body())
		}
	}
	// The documents score apart (the scenario ranks, not ties).
	if out.Results[0].RelevanceScore == out.Results[2].RelevanceScore {
		t.Fatalf("tied scores: %s", resp.Body())
	}

	spec := shortSpec(kindRerank)
	tg.client = newClient(addr, spec.Conns, spec.Timeout, false, 0)
	st := runLoad(context.Background(), tg, &spec, quietProgress())
	if st.Measured == 0 || st.OK != st.Measured || st.Errs.Total()+st.WarmupErrs.Total() != 0 {
		t.Fatalf("ok %d of %d measured, errors %v, in warm-up %v", st.OK, st.Measured, st.Errs, st.WarmupErrs)
	}
	tg.client.CloseIdleConnections()
}

// Through the gateway each kind's load names an endpoint of the type that serves its
// path: every scenario's gateway config has it.
func TestGatewayModelNamesAnEndpointOfItsType(t *testing.T) {
	types := map[reqKind]string{kindChat: "chat", kindStream: "chat", kindResponses: "chat",
		kindEmbeddings: "embeddings", kindRerank: "rerank", kindMessages: "chat"}
	base := gwParams{Listen: "127.0.0.1:18080", Admin: "127.0.0.1:19090", Upstream: "127.0.0.1:18001", Model: mockModel}
	withAB := base
	withAB.Canary = "127.0.0.1:18002"
	withRedis := base
	withRedis.RedisURL = "redis://127.0.0.1:16379/0"
	for name, p := range map[string]gwParams{"chat": base, "ab": withAB, "redis-limits": withRedis} {
		y, err := gatewayConfig(p)
		if err != nil {
			t.Fatal(err)
		}
		var c gwConfig
		if err := yaml.Unmarshal(y, &c); err != nil {
			t.Fatal(err)
		}
		for k, typ := range types {
			t.Run(name+"/"+k.String(), func(t *testing.T) {
				for _, ep := range c.Endpoints {
					if ep.Name == gatewayModel(k) {
						if ep.Type != typ {
							t.Fatalf("endpoint %s is of type %s, want %s", ep.Name, ep.Type, typ)
						}
						return
					}
				}
				t.Fatalf("no endpoint %s in\n%s", gatewayModel(k), y)
			})
		}
	}
}
