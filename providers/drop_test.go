package providers

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

func TestDropFields(t *testing.T) {
	names := []string{"temperature", "top_p"}
	for _, c := range []struct{ in, want string }{
		{`{"model":"m","temperature":0.2}`, `{"model":"m"}`},
		{`{"temperature":0.2,"model":"m"}`, `{"model":"m"}`},
		{`{"a":1,"temperature":0.2,"b":2}`, `{"a":1,"b":2}`},
		{`{"temperature":0.2,"top_p":1}`, `{}`},
		{` { "a" : 1 , "top_p" : 1 , "b" : [1, 2] } ` + "\n", ` { "a" : 1,"b" : [1, 2]} ` + "\n"},
		{`{"temp\u0065rature":2,"a":1}`, `{"a":1}`},
		// Only top-level members go: a tool's parameter of the same name stays.
		{`{"tools":[{"temperature":1}],"top_p":0.5}`, `{"tools":[{"temperature":1}]}`},
		{`{"a":"temperature"}`, `{"a":"temperature"}`},
		{`{}`, `{}`},
		{`[1]`, `[1]`},
		{`{"a":1,"temperature":`, `{"a":1,"temperature":`},
	} {
		got := dropFields([]byte(c.in), names)
		if string(got) != c.want {
			t.Errorf("%s: %s, want %s", c.in, got, c.want)
		}
	}
}

func TestDropFieldsAllocs(t *testing.T) {
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"Hi"}],"temperature":0.2,"top_p":1,"seed":3}`)
	buf := make([]byte, 0, len(body))
	names := []string{"temperature", "top_p"}
	if n := testing.AllocsPerRun(100, func() { buf = dropFields(append(buf[:0], body...), names) }); n != 0 {
		t.Errorf("%v allocations per body, want 0", n)
	}
}

func BenchmarkDropFields(b *testing.B) {
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"Write a haiku about the sea and the ships that cross it at night."}],"temperature":0.2,"top_p":1,"seed":3,"max_tokens":64}`)
	buf := make([]byte, 0, len(body))
	names := []string{"temperature", "top_p"}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		buf = dropFields(append(buf[:0], body...), names)
	}
}

func FuzzDropFields(f *testing.F) {
	files, _ := filepath.Glob("testdata/anthropic/request_*.json")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "temperature")
	}
	f.Add([]byte(`{"a":1,"b":2}`), "a")
	f.Add([]byte(`{"model":"m","messages":[{"role":"developer","content":"a"},{"r\u006fle":"develop\u0065r"},{"role":"user","content":"developer"}]}`), "temperature")
	f.Add([]byte(` {"messages" : [ null, {"role":"developer","role":"user"}, {"role":"user","role":"developer"} ] } `), "model")
	f.Fuzz(func(t *testing.T, body []byte, name string) {
		valid := json.Valid(body)
		checkDeveloperAsSystem(t, body, valid)
		in := slices.Clone(body)
		out := dropFields(in, []string{name, "messages"})
		if !valid {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("%s without %q is not JSON: %s", body, name, out)
		}
		var it, ot jsonscan.Iter
		if it.Reset(body) != nil {
			return
		}
		ot.Reset(out)
		for {
			k, v, ok := it.Next()
			if !ok {
				break
			}
			if foldedKey(k, name) || foldedKey(k, "messages") {
				continue
			}
			k2, v2, ok := ot.Next()
			if !ok || string(k2) != string(k) || string(v2) != string(v) {
				t.Fatalf("%s: member %s:%s not kept in order: %s", body, k, v, out)
			}
		}
		if k, _, ok := ot.Next(); ok {
			t.Fatalf("%s: %s left in %s", body, k, out)
		}
	})
}

// checkDeveloperAsSystem checks that developerAsSystem turns valid JSON into valid
// JSON with the same members, but for the role of every element of messages whose role
// is developer, which reads system, as a JSON parser that keeps the last of equal
// names reads both.
func checkDeveloperAsSystem(t *testing.T, body []byte, valid bool) {
	out := developerAsSystem(slices.Clone(body))
	if !valid {
		return
	}
	if !json.Valid(out) {
		t.Fatalf("%s with developer roles as system is not JSON: %s", body, out)
	}
	var want, got any
	if json.Unmarshal(body, &want) != nil || json.Unmarshal(out, &got) != nil {
		t.Fatalf("%s or %s does not decode", body, out)
	}
	if obj, ok := want.(map[string]any); ok {
		if msgs, ok := obj["messages"].([]any); ok {
			for _, m := range msgs {
				if m, ok := m.(map[string]any); ok && m["role"] == "developer" {
					m["role"] = "system"
				}
			}
		}
	}
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("%s\nbecame %s", body, out)
	}
}

// Uncapped: true only when every non-null cap the body names is dropped, matched as
// drop_params matches (any case, escapes).
func TestUncapped(t *testing.T) {
	for _, tc := range []struct {
		drop []string
		body string
		want bool
	}{
		{nil, `{"max_tokens":10}`, false},
		{[]string{"temperature"}, `{"max_tokens":10}`, false},
		{[]string{"max_tokens"}, `{"max_tokens":10}`, true},
		{[]string{"MAX_TOKENS"}, `{"Max_Tokens":10}`, true},
		{[]string{"max_tokens"}, `{"max_tok\u0065ns":10}`, true},
		{[]string{"max_tokens"}, `{"messages":[]}`, false},
		{[]string{"max_tokens"}, `{"max_tokens":null,"max_completion_tokens":5}`, false},
		{[]string{"max_tokens"}, `{"max_tokens":10,"max_completion_tokens":5}`, false},
		{[]string{"max_tokens", "max_completion_tokens"}, `{"max_tokens":10,"max_completion_tokens":5}`, true},
		{[]string{"max_completion_tokens"}, `{"max_completion_tokens":5,"max_tokens":null}`, true},
		{[]string{"max_tokens"}, `{"max_tokens":10`, false},
		// The Responses API's cap.
		{[]string{"max_output_tokens"}, `{"input":"hi","max_output_tokens":64}`, true},
		{[]string{"max_tokens"}, `{"input":"hi","max_output_tokens":64}`, false},
	} {
		b := &Backend{cfg: Config{DropParams: tc.drop}, dropsCap: dropsCap(tc.drop), native: true}
		if got := b.Uncapped(Chat, []byte(tc.body)); got != tc.want {
			t.Errorf("drop %v, body %s: Uncapped %v, want %v", tc.drop, tc.body, got, tc.want)
		}
	}
	// Through the bridge, max_output_tokens becomes the chat call's cap: a drop of
	// any cap's name may remove it.
	for _, drop := range [][]string{{"max_tokens"}, {"max_completion_tokens"}, {"max_output_tokens"}} {
		b := &Backend{cfg: Config{DropParams: drop}, dropsCap: dropsCap(drop)}
		if !b.Uncapped(Chat, []byte(`{"input":"hi","max_output_tokens":64}`)) {
			t.Errorf("bridged, drop %v: capped", drop)
		}
	}
	if b := (&Backend{cfg: Config{DropParams: []string{"temperature"}}}); b.Uncapped(Chat, []byte(`{"input":"hi","max_output_tokens":64}`)) {
		t.Error("bridged, dropping no cap: uncapped")
	}
	drop := []string{"temperature", "max_tokens"}
	b := &Backend{cfg: Config{DropParams: drop}, dropsCap: dropsCap(drop)}
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"Hi"}],"max_tokens":10,"temperature":0.2}`)
	if n := testing.AllocsPerRun(100, func() { b.Uncapped(Chat, body) }); n != 0 {
		t.Errorf("Uncapped: %v allocations, want 0", n)
	}
}
