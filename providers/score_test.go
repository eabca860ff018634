package providers

import (
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// Score is vLLM's score API, served by rerank endpoints: it generates nothing, goes to
// {base_url}/score, and neither the Messages API nor Azure's deployment URLs have it.
func TestScoreKind(t *testing.T) {
	if Score.String() != "score" || Score.Path() != "/score" || Score.Generates() {
		t.Errorf("score is %q at %q, generates %v", Score.String(), Score.Path(), Score.Generates())
	}
	if e := errAnthropicScore.Error(); e != "The model is served by the Anthropic Messages API, which has no score API; use a model served by a rerank backend." {
		t.Errorf("anthropic refusal %q", e)
	}
	b := newTestBackend(t, anthropicConfig("http://127.0.0.1:1"))
	call := &Call{Kind: Score, Body: []byte(`{"model":"m","text_1":"a","text_2":"b"}`), Model: [2]int{9, 12}, Header: clientHeader()}
	var out fasthttp.Response
	var res Result
	if err := b.Send(call, &out, &res); err != errAnthropicScore {
		t.Errorf("a score call to an anthropic backend: %v, want its refusal", err)
	}
}

// A score call is sent to {base_url}/score with only model rewritten, and its usage
// counted as input: vLLM's prompt_tokens (completion_tokens 0, or left out), or a
// lone total_tokens, as a rerank's.
func TestScoreSend(t *testing.T) {
	for _, c := range []struct {
		usage string
		in    int64
	}{
		{`{"prompt_tokens":21,"total_tokens":21,"completion_tokens":0,"prompt_tokens_details":null}`, 21},
		{`{"prompt_tokens":21,"total_tokens":21}`, 21},
		{`{"total_tokens":21}`, 21},
	} {
		up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"id":"score-1","object":"list","created":1,"model":"up-model","data":[{"index":0,"object":"score","score":0.5}],"usage":` + c.usage + `}`)
		})
		b := newTestBackend(t, Config{Provider: "openai", BaseURL: up.URL + "/v1", Model: "up-model"})
		body := `{"model":"rank","queries":"q","documents":["a","b"],"priority":0}`
		call := &Call{Kind: Score, Body: []byte(body), Model: [2]int{9, 15}, StreamOptions: [2]int{-1, -1}, Stream: false,
			Header: clientHeader(), Deadline: time.Now().Add(10 * time.Second)}
		var out fasthttp.Response
		var res Result
		if err := b.Send(call, &out, &res); err != nil {
			t.Fatalf("%s: %v", c.usage, err)
		}
		uri, _, sent, _ := up.last()
		if uri != "/v1/score" {
			t.Errorf("sent to %s, want /v1/score", uri)
		}
		if want := `{"model":"up-model","queries":"q","documents":["a","b"],"priority":0}`; string(sent) != want {
			t.Errorf("sent %s, want %s", sent, want)
		}
		if res.Usage.Input != c.in || res.Usage.Output != 0 {
			t.Errorf("%s: usage %+v, want %d input tokens", c.usage, res.Usage, c.in)
		}
	}
}

// A score call's prefix hash is of its first left item, as vLLM's union picks the
// pair (queries with documents or items, data_1 with data_2, text_1 with text_2):
// the same left item hashes the same in every shape, a list by its first element, a
// multimodal item by its parts, and another pair's left member is not read.
func TestScorePrefixHash(t *testing.T) {
	hash := func(body string) (uint64, bool) {
		return prefixHash(&Call{Kind: Score, Body: []byte(body)}, 512)
	}
	want, ok := hash(`{"model":"m","text_1":"which gateway","text_2":["a","b"]}`)
	if !ok {
		t.Fatal("no hash for text_1")
	}
	for _, body := range []string{
		`{"model":"m","queries":"which gateway","documents":["a","b"]}`,
		`{"model":"m","queries":["which gateway","other"],"items":["a","b"]}`,
		`{"model":"m","data_2":"x","data_1":[ "which gat\u0065way" ]}`,
		`{"model":"m","text_1":["which gateway"],"text_2":"b","data_1":"other"}`,
		// queries without its pair: the text pair is the one vLLM takes.
		`{"model":"m","queries":"other","text_1":"which gateway","text_2":"b"}`,
		// With both pairs whole, queries/documents comes first.
		`{"model":"m","text_1":"other","text_2":"b","documents":["a"],"queries":"which gateway"}`,
	} {
		if h, ok := hash(body); !ok || h != want {
			t.Errorf("%s hashes %x %v, want %x as text_1", body, h, ok, want)
		}
	}
	img := func(i int) string {
		return `{"content":[{"type":"image_url","image_url":{"url":"https://img.example.com/` + strconv.Itoa(i) + `.png"}}]}`
	}
	a, _ := hash(`{"model":"m","queries":` + img(1) + `,"documents":["a"]}`)
	b, _ := hash(`{"model":"m","queries":[` + img(1) + `,"x"],"documents":["a","b"]}`)
	c, _ := hash(`{"model":"m","queries":` + img(2) + `,"documents":["a"]}`)
	if a != b || a == c {
		t.Errorf("image left items hash %x, %x (same image in a list), %x (another image)", a, b, c)
	}
	for _, body := range []string{`{"model":"m","text_2":"a"}`, `{"model":"m","queries":[],"documents":["a"]}`, `{"model":"m"}`} {
		if _, ok := hash(body); ok {
			t.Errorf("%s: a hash without a left item", body)
		}
	}
}

// scorePrefixBody is a RAG framework's score call: one query with 8 documents.
var scorePrefixBody = []byte(`{"model":"rank","documents":["Tollgate shares limits through Redis.","Bananas are yellow.","A gateway sits in front of model servers.","Limits hold across every replica.","Nothing here.","Tokens are counted twice.","Canaries step up slowly.","Redis keeps the buckets."],"queries":["Which gateway enforces limits across replicas?"],"truncate_prompt_tokens":512}`)

// BenchmarkScorePrefixHash is the prefix hash of a score call placed by affinity: the
// walk to its left member, past the documents, and the hash of its first item.
func BenchmarkScorePrefixHash(b *testing.B) {
	call := &Call{Kind: Score, Body: scorePrefixBody}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := prefixHash(call, 1024); !ok {
			b.Fatal("no hash")
		}
	}
}
