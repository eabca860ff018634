package providers

import (
	"encoding/json"
	"testing"
)

// TestAppendBodyNoModel: a backend with NoModel (an MLflow endpoint without model.name,
// to a server of one model or an Azure deployment) sends the client's body without its
// model member, its comma with it, every other byte as it came, stream_options added
// or replaced as for any backend.
func TestAppendBodyNoModel(t *testing.T) {
	for _, c := range []struct {
		name, body string
		force      bool
		want       string
	}{
		{"first", `{"model":"chat","messages":[]}`, false, `{"messages":[]}`},
		{"middle", `{"n":1,"model":"chat","messages":[]}`, false, `{"n":1,"messages":[]}`},
		{"last", `{"messages":[],"model":"chat"}`, false, `{"messages":[]}`},
		{"spaced", "{ \"messages\" : [] ,\n  \"model\" : \"chat\" \n}", false, "{ \"messages\" : []  \n}"},
		{"spaced first", "{ \"model\" : \"chat\" , \"n\":1}", false, "{  \"n\":1}"},
		{"only", `{"model":"chat"}`, false, `{}`},
		{"escaped name", `{"mod\u0065l":"chat","n":1}`, false, `{"n":1}`},
		{"usage added", `{"model":"chat","stream":true}`, true, `{"stream":true,"stream_options":{"include_usage":true}}`},
		{"usage added, model only", `{"model":"chat"}`, true, `{"stream_options":{"include_usage":true}}`},
		{"usage replaced after", `{"model":"chat","stream_options":{},"stream":true}`, true, `{"stream_options":{"include_usage":true},"stream":true}`},
		{"usage replaced before", `{"stream":true,"stream_options":{},"model":"chat"}`, true, `{"stream":true,"stream_options":{"include_usage":true}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			call := &Call{Body: []byte(c.body), Model: spanOf(t, c.body, "model"), StreamOptions: spanOf(t, c.body, "stream_options")}
			got := appendBody(nil, call, nil, c.force)
			if string(got) != c.want {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
			if !json.Valid(got) {
				t.Fatalf("%s is not JSON", got)
			}
		})
	}
}

// TestNoModelBackend: NoModel takes the place of a model for providers openai and
// azure, whose calls then go without one, and anthropic, whose Messages API calls
// carry "model": "" (the member is required there); a mock backend still needs one.
func TestNoModelBackend(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Provider: "openai", BaseURL: "http://127.0.0.1:1/v1", NoModel: true}, ""},
		{Config{Provider: "azure", BaseURL: "https://r.openai.azure.com", Deployment: "d", NoModel: true}, ""},
		{Config{Provider: "anthropic", BaseURL: "https://api.anthropic.com/v1", APIKey: "k", NoModel: true}, ""},
		{Config{Provider: "anthropic", BaseURL: "https://api.anthropic.com/v1", APIKey: "k"}, "model: is required"},
		{Config{Provider: "mock", NoModel: true}, "model: is required"},
		{Config{Provider: "openai", BaseURL: "http://127.0.0.1:1/v1"}, "model: is required"},
	} {
		err := c.cfg.Validate()
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("%s, NoModel %v: %q, want %q", c.cfg.Provider, c.cfg.NoModel, got, c.want)
		}
	}
	if o := newOpenAI(&Config{Provider: "openai", NoModel: true}); o.model != nil {
		t.Errorf("NoModel backend's model = %s, want none", o.model)
	}
	if a := newAnthropic(&Config{Provider: "anthropic", NoModel: true}); string(a.model) != `""` {
		t.Errorf("NoModel anthropic backend's model = %s, want \"\"", a.model)
	}
	got, rerr := appendChatRequest(nil, []byte(`{"model":"c","prompt":"a"}`), nil, 0, false)
	if want := `{"messages":[{"role":"user","content":"a"}]}`; rerr != nil || string(got) != want {
		t.Errorf("completions through chat without a model: %s %v, want %s", got, rerr, want)
	}
}

func BenchmarkAppendBodyNoModel(b *testing.B) {
	body := `{"model":"chat","messages":[{"role":"user","content":"Tell me a story about a fast gateway."}],"max_tokens":64}`
	call := &Call{Body: []byte(body), Model: [2]int{9, 15}, StreamOptions: [2]int{-1, -1}}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendBody(buf[:0], call, nil, true)
	}
}
