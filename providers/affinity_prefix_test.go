package providers

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// affinityTargets are n target URLs; the ring is built from the URLs alone, so no
// target needs to answer for choose to pick one.
func affinityTargets(n int) []string {
	var s []string
	for i := range n {
		s = append(s, "http://10.0.0."+strconv.Itoa(i+1)+":8000/v1")
	}
	return s
}

// The same prompt, sent as JSON that differs only in what RFC 8259 leaves free
// (insignificant whitespace, \u escapes of the same characters, the order of an
// object's members), is the same prompt to vLLM's prefix cache: affinity must send it
// to the same target. Python's json.dumps (", " and ": ", ensure_ascii) and a compact
// encoder (httpx >= 0.28, JS, Go) write the same messages differently.
func TestAffinitySamePromptOtherJSONEncodingSameTarget(t *testing.T) {
	b := newPoolBackend(t, Config{Targets: affinityTargets(4), Affinity: AffinityConfig{By: "prefix", Bytes: 512}}, nil)
	esc := strings.NewReplacer("é", `\u00e9`, "è", `\u00e8`, "°", `\u00b0`)
	variants := []struct {
		name string
		body func(sys string) string
	}{
		{"spaces after : and ,", func(sys string) string {
			return `{"model": "chat", "messages": [{"role": "system", "content": "` + sys + `"}, {"role": "user", "content": "hi"}]}`
		}},
		{"non-ASCII as \\u escapes", func(sys string) string {
			return `{"model":"chat","messages":[{"role":"system","content":"` + esc.Replace(sys) + `"},{"role":"user","content":"hi"}]}`
		}},
		{"members in another order", func(sys string) string {
			return `{"model":"chat","messages":[{"content":"` + sys + `","role":"system"},{"content":"hi","role":"user"}]}`
		}},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			moved := 0
			for i := range 50 {
				sys := "Tu es un assistant très précis n°" + strconv.Itoa(i) + ". " + strings.Repeat("Réponds brièvement. ", 30)
				compact := `{"model":"chat","messages":[{"role":"system","content":"` + sys + `"},{"role":"user","content":"hi"}]}`
				home := b.choose(&Call{Kind: Chat, Body: []byte(compact)})
				if got := b.choose(&Call{Kind: Chat, Body: []byte(v.body(sys))}); got != home {
					moved++
				}
			}
			if moved != 0 {
				t.Errorf("%d of 50 prompts went to another target than the same prompt in compact JSON", moved)
			}
		})
	}
}

// Under vllm_queue, the load affinity bounds is what each target's vLLM reports, not
// only this gateway's requests in flight: a target whose vLLM reports 200 waiting and
// 64 running (the traffic of other gateway replicas, or other clients) is passed along
// the ring while the others report themselves idle.
func TestAffinityBoundCountsVLLMQueue(t *testing.T) {
	us := startReplicas(t, 3)
	b := newPoolBackend(t, Config{Targets: replicaURLs(us), Balance: "vllm_queue",
		Affinity: AffinityConfig{By: "prefix", Bytes: 512, LoadFactor: 1.25}}, nil)
	prompt := "You are the support bot of ACME. " + strings.Repeat("Answer politely. ", 10)
	home := b.choose(promptCall(prompt, false))
	us[home].waiting.Store(200)
	us[home].running.Store(64)
	for i := range us {
		b.readLoad(i, nil)
	}
	for range 10 {
		if _, err := sendOnce(b, promptCall(prompt, false)); err != nil {
			t.Fatal(err)
		}
	}
	if got := us[home].hits.Load(); got != 0 {
		t.Errorf("target reporting 200 waiting and 64 running (the others idle) got %d of 10 requests", got)
	}
}

// Under vllm_queue, a prefix stays on its target while the reported loads are even,
// and a target without a fresh read is bounded by its requests in flight.
func TestAffinityVLLMQueueEvenLoadKeepsPrefix(t *testing.T) {
	us := startReplicas(t, 3)
	b := newPoolBackend(t, Config{Targets: replicaURLs(us), Balance: "vllm_queue",
		Affinity: AffinityConfig{By: "prefix", Bytes: 512, LoadFactor: 1.25}}, nil)
	prompt := "You are the support bot of ACME. " + strings.Repeat("Answer politely. ", 10)
	home := b.choose(promptCall(prompt, false))
	for i, u := range us {
		u.running.Store(10)
		if i != home {
			b.readLoad(i, nil) // home stays unread
		}
	}
	for range 10 {
		if _, err := sendOnce(b, promptCall(prompt, false)); err != nil {
			t.Fatal(err)
		}
	}
	if got := us[home].hits.Load(); got != 10 {
		t.Errorf("home target got %d of 10 requests, want all", got)
	}
}

func TestPrefixHash(t *testing.T) {
	same := []struct {
		name string
		kind Kind
		a, b string
		n    int
	}{
		{"other members ignored", Chat, `{"model":"m","messages":[{"role":"user","content":"hi"}],"user":"u"}`,
			`{"stream":true,"messages":[{"role":"user","content":"hi"}],"temperature":0.2}`, 100},
		{"spacing", Chat, `{"messages":[{"role":"user","content":"hi"}]}`,
			"{ \"messages\" :\n [ { \"role\" : \"user\" ,\t\"content\" : \"hi\" } ] }", 100},
		{"escapes", Chat, `{"messages":[{"role":"user","content":"é \"q\" 😀 /"}]}`,
			`{"messages":[{"role":"\u0075ser","content":"\u00e9 \u0022q\" \ud83d\ude00 \/"}]}`, 100},
		{"member order", Chat, `{"messages":[{"role":"user","name":"x","content":"hi"}]}`,
			`{"messages":[{"content":"hi","name":"x","role":"user"}]}`, 100},
		{"one text part as the string", Chat, `{"messages":[{"role":"user","content":"hi"}]}`,
			`{"messages":[{"role":"user","content":[{"text":"hi","type":"text"}]}]}`, 100},
		{"image part member order", Chat, `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/a.png","detail":"low"}}]}]}`,
			`{"messages":[{"role":"user","content":[{"image_url":{"detail":"low","url":"https://x/a.png"},"type":"image_url"}]}]}`, 100},
		{"escapes in a part's type", Chat, `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"u"}},{"type":"a&b"}]}]}`,
			`{"messages":[{"role":"user","content":[{"type":"image\u005furl","image_url":{"url":"u"}},{"type":"a\u0026b"}]}]}`, 100},
		{"same first n bytes", Chat, `{"messages":[{"role":"system","content":"abcdefgh"}]}`,
			`{"messages":[{"role":"system","content":"abcdefgz"},{"role":"user","content":"x"}]}`, 10},
		{"cut inside an escape run", Chat, `{"messages":[{"role":"s","content":"éééé"}]}`,
			`{"messages":[{"role":"s","content":"\u00e9\u00e9\u00e9\u00e8"}]}`, 7},
		{"prompt string", Completions, `{"prompt":"say \"hi\"","model":"m"}`, `{"model":"n","prompt" : "say \u0022hi\u0022"}`, 100},
		{"prompt tokens", Completions, `{"prompt":[1,2,3]}`, `{"prompt":[ 1, 2 ,3 ]}`, 100},
		{"input strings", Embeddings, `{"input":["a","b"]}`, `{"input": ["\u0061", "b"]}`, 100},
	}
	for _, tc := range same {
		t.Run(tc.name, func(t *testing.T) {
			ha, oka := prefixHash(&Call{Kind: tc.kind, Body: []byte(tc.a)}, tc.n)
			hb, okb := prefixHash(&Call{Kind: tc.kind, Body: []byte(tc.b)}, tc.n)
			if !oka || !okb || ha != hb {
				t.Errorf("hashes %x (%v) and %x (%v), want the same", ha, oka, hb, okb)
			}
		})
	}
	other := []struct {
		name string
		kind Kind
		a, b string
		n    int
	}{
		{"role", Chat, `{"messages":[{"role":"user","content":"hi"}]}`, `{"messages":[{"role":"system","content":"hi"}]}`, 100},
		{"text split otherwise", Chat, `{"messages":[{"role":"user","content":"ab"},{"role":"user","content":"c"}]}`,
			`{"messages":[{"role":"user","content":"a"},{"role":"user","content":"bc"}]}`, 100},
		{"image url", Chat, `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/a.png"}}]}]}`,
			`{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/b.png"}}]}]}`, 100},
		{"differ within n", Chat, `{"messages":[{"role":"system","content":"abcdefgh"}]}`,
			`{"messages":[{"role":"system","content":"abcdefgz"}]}`, 100},
		{"tokens", Completions, `{"prompt":[1,2,3]}`, `{"prompt":[1,2,4]}`, 100},
	}
	for _, tc := range other {
		t.Run(tc.name, func(t *testing.T) {
			ha, _ := prefixHash(&Call{Kind: tc.kind, Body: []byte(tc.a)}, tc.n)
			hb, _ := prefixHash(&Call{Kind: tc.kind, Body: []byte(tc.b)}, tc.n)
			if ha == hb {
				t.Errorf("same hash %x, want different", ha)
			}
		})
	}
	none := []struct {
		name string
		kind Kind
		body string
		n    int
	}{
		{"no prompt", Chat, `{"model":"m","prompt":"x"}`, 100},
		{"nested key not top level", Chat, `{"x":{"messages":[1]}}`, 100},
		{"not an object", Chat, `["messages"]`, 100},
		{"zero bytes", Chat, `{"messages":[1]}`, 0},
	}
	for _, tc := range none {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := prefixHash(&Call{Kind: tc.kind, Body: []byte(tc.body)}, tc.n); ok {
				t.Error("got a hash, want none")
			}
		})
	}
}

// FuzzPrefixHash checks that any body is walked without a fault, and that a chat body
// re-encoded by encoding/json (members sorted, compact, its own escapes) hashes the same.
func FuzzPrefixHash(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi \"there\" [{"}]}`), uint16(20))
	f.Add([]byte(`{"messages": [{"content":"a\\"b\u00e9","role":"system"}] }`), uint16(3))
	f.Add([]byte(`{"messages":[{"role":"user","content":[{"type":"text","text":"a<b"},{"type":"image_url","image_url":{"url":"u"}}]}]}`), uint16(100))
	f.Add([]byte(`{"a":[{}],"messages":null}`), uint16(100))
	f.Fuzz(func(t *testing.T, body []byte, n uint16) {
		h, ok := prefixHash(&Call{Kind: Chat, Body: body}, int(n))
		if !utf8.Valid(body) {
			return
		}
		var top map[string]json.RawMessage
		if json.Unmarshal(body, &top) != nil || oddKeys(body) {
			return
		}
		d := json.NewDecoder(bytes.NewReader(top["messages"]))
		d.UseNumber()
		var messages []map[string]any
		if d.Decode(&messages) != nil || messages == nil {
			return
		}
		re, err := json.Marshal(map[string]any{"messages": messages})
		if err != nil {
			t.Fatal(err)
		}
		if h2, ok2 := prefixHash(&Call{Kind: Chat, Body: re}, int(n)); h2 != h || ok2 != ok {
			t.Fatalf("%s hashes %x, re-encoded as %s %x", body, h, re, h2)
		}
	})
}

// oddKeys reports whether an object in the JSON b has a key twice, which
// encoding/json collapses to the last, or a key written otherwise than encoding/json
// writes it: prefixHash matches member names as written, no encoder escaping the
// ASCII letters of "role" or "content".
func oddKeys(b []byte) bool {
	d := json.NewDecoder(bytes.NewReader(b))
	var walk func() bool
	walk = func() bool {
		tok, err := d.Token()
		if err != nil {
			return false
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for d.More() {
				k, _ := d.Token()
				s, _ := k.(string)
				if q, _ := json.Marshal(s); seen[s] || !bytes.Contains(b, q) {
					return true
				}
				seen[s] = true
				if walk() {
					return true
				}
			}
			_, _ = d.Token()
		case json.Delim('['):
			for d.More() {
				if walk() {
					return true
				}
			}
			_, _ = d.Token()
		}
		return false
	}
	return walk()
}

// The Responses API's prompt is its instructions, then its input: calls that share
// instructions longer than the prefix hash alike whatever their input, an input of
// items hashes its messages' text (input_text parts as text), and a string input and
// the same text as one user part differ only by the role the items carry.
func TestPrefixHashResponses(t *testing.T) {
	hash := func(body string, n int) uint64 {
		t.Helper()
		call := &Call{Kind: Responses, Body: []byte(body)}
		h, ok := prefixHash(call, n)
		if !ok {
			t.Fatalf("no prompt in %s", body)
		}
		return h
	}
	instr := strings.Repeat("You are a careful assistant. ", 8)
	a := hash(`{"model":"m","instructions":"`+instr+`","input":"first question"}`, 64)
	b := hash(`{"model":"m","instructions":"`+instr+`","input":[{"role":"user","content":"another"}]}`, 64)
	if a != b {
		t.Error("calls sharing 64 bytes of instructions hash apart")
	}
	if a == hash(`{"model":"m","instructions":"Other rules entirely, longer than sixty-four bytes of text here.","input":"first question"}`, 64) {
		t.Error("other instructions hash alike")
	}
	parts := hash(`{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"What is in the picture, and why?"}]}]}`, 512)
	plain := hash(`{"model":"m","input":[{"role":"user","content":"What is in the picture, and why?"}]}`, 512)
	other := hash(`{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"Something else entirely, asked."}]}]}`, 512)
	if parts != plain || parts == other {
		t.Errorf("input_text parts hash %x, the same text %x, other text %x", parts, plain, other)
	}
	if _, ok := prefixHash(&Call{Kind: Responses, Body: []byte(`{"model":"m"}`)}, 64); ok {
		t.Error("a call without instructions or input has a prompt")
	}
}
