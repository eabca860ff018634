package providers

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// developerAsSystem turns the role of the top-level messages' developer messages to
// system, matched by the string the role spells, and leaves every other byte, and
// every other "developer", as it came.
func TestDeveloperAsSystem(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"first message",
			`{"model":"m","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"Hi"}]}`,
			`{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]}`},
		{"in the middle and last",
			`{"messages":[{"role":"user","content":"Hi"},{"role":"developer","content":"In French."},{"role":"assistant","content":"Salut"},{"content":"x","role":"developer"}],"model":"m"}`,
			`{"messages":[{"role":"user","content":"Hi"},{"role":"system","content":"In French."},{"role":"assistant","content":"Salut"},{"content":"x","role":"system"}],"model":"m"}`},
		{"role escaped",
			`{"messages":[{"role":"develop\u0065r","content":"a"},{"role":"\u0064\u0065\u0076\u0065\u006C\u006f\u0070\u0065\u0072"}]}`,
			`{"messages":[{"role":"system","content":"a"},{"role":"system"}]}`},
		{"one letter escaped, no other",
			`{"messages":[{"role":"de\u0076eloper","content":"a"}]}`,
			`{"messages":[{"role":"system","content":"a"}]}`},
		{"member names escaped",
			`{"m\u0065ssages":[{"r\u006fle":"developer","content":"a"}]}`,
			`{"m\u0065ssages":[{"r\u006fle":"system","content":"a"}]}`},
		{"space kept",
			" { \"messages\" : [ { \"role\" : \"developer\" ,\n \"content\" : \"a\" } , {\"role\":\"developer\"} ] } \n",
			" { \"messages\" : [ { \"role\" : \"system\" ,\n \"content\" : \"a\" } , {\"role\":\"system\"} ] } \n"},
		{"role given twice",
			`{"messages":[{"role":"developer","role":"developer"}]}`,
			`{"messages":[{"role":"system","role":"system"}]}`},
		{"messages given twice",
			`{"messages":[{"role":"developer"}],"messages":[{"role":"developer"}]}`,
			`{"messages":[{"role":"system"}],"messages":[{"role":"system"}]}`},
		{"elements that are no object",
			`{"messages":[null,"developer",["developer",{"role":"developer"}],{"role":"developer"}]}`,
			`{"messages":[null,"developer",["developer",{"role":"developer"}],{"role":"system"}]}`},
		{"a long content before and after",
			`{"messages":[{"role":"user","content":"` + strings.Repeat("x", 300) + `"},{"role":"developer","content":"` + strings.Repeat("y", 300) + `"}],"temperature":0}`,
			`{"messages":[{"role":"user","content":"` + strings.Repeat("x", 300) + `"},{"role":"system","content":"` + strings.Repeat("y", 300) + `"}],"temperature":0}`},

		{"developer in content", `{"messages":[{"role":"user","content":"I am a developer: \"role\":\"developer\""}]}`, ""},
		{"developer as a tool's name", `{"messages":[{"role":"assistant","tool_calls":[{"id":"1","type":"function","function":{"name":"developer","arguments":"{}"}}]},{"role":"tool","tool_call_id":"1","name":"developer","content":"ok"}]}`, ""},
		{"a nested role", `{"messages":[{"role":"user","content":[{"type":"text","text":"x","role":"developer"}],"metadata":{"role":"developer"}}]}`, ""},
		{"a top-level role", `{"role":"developer","messages":[{"role":"user","content":"x"}]}`, ""},
		{"a role of another case", `{"messages":[{"role":"Developer"},{"Role":"developer"},{"role":"developer "}]}`, ""},
		{"a role that is no string", `{"messages":[{"role":null},{"role":["developer"]}],"user":"developer"}`, ""},
		{"messages that are no array", `{"messages":{"role":"developer"},"prompt":[{"role":"developer"}]}`, ""},
		{"an escape of another character", `{"messages":[{"role":"user","content":"caf\u00e9 \u00fc"}]}`, ""},
		{"an escaped role that spells more", `{"messages":[{"role":"develop\u0065rs"},{"role":"\u0064eveloper\u0000"},{"role":"` + strings.Repeat(`\u0064`, 40) + `"}]}`, ""},
		{"no developer", `{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]}`, ""},
		{"not JSON", `{"messages":[{"role":"developer"}`, ""},
		{"not an object", `[{"role":"developer"}]`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := []byte(c.in)
			got := developerAsSystem(in)
			if c.want == "" {
				if string(got) != c.in || len(got) > 0 && &got[0] != &in[0] {
					t.Fatalf("%s\nbecame %s, want it as it came", c.in, got)
				}
				return
			}
			if string(got) != c.want {
				t.Fatalf("%s\nbecame %s\nwant   %s", c.in, got, c.want)
			}
			if json.Valid([]byte(c.in)) && !json.Valid(got) {
				t.Fatalf("%s became invalid JSON: %s", c.in, got)
			}
		})
	}
}

// mayNameDeveloper lets through, without a scan, only bodies that hold developer
// neither written out nor with a letter escaped.
func TestMayNameDeveloper(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{`{"messages":[{"role":"developer"}]}`, true},
		{`{"messages":[{"role":"develop\u0065r"}]}`, true},
		{`{"messages":[{"role":"\u0064\u0065\u0076\u0065\u006c\u006f\u0070\u0065\u0072"}]}`, true},
		{`{"messages":[{"role":"de\u0076eloper"}]}`, true},
		{`{"messages":[{"role":"user","content":"caf\u00e9\n"}]}`, false},
		{`{"messages":[{"role":"user","content":"\u0041\u001b"}]}`, false},
		{`{"messages":[{"role":"user","content":"Developer"}]}`, false},
		{`\u00`, false},
		{``, false},
	} {
		if got := mayNameDeveloper([]byte(c.in)); got != c.want {
			t.Errorf("%s: %v, want %v", c.in, got, c.want)
		}
	}
}

// A backend with developer_role system sends a chat call's developer messages as
// system, streamed or not; one without it, and the call's own body, keep them.
func TestDeveloperRoleSend(t *testing.T) {
	const body = `{"model":"chat","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"Hi"}]}`
	for _, c := range []struct {
		name, role string
		stream     bool
		want       string
	}{
		{"system", DeveloperAsSystem, false,
			`{"model":"up","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]}`},
		{"system, streamed", DeveloperAsSystem, true,
			`{"model":"up","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"stream":true,"stream_options":{"include_usage":true}}`},
		{"developer", DeveloperAsCame, false,
			`{"model":"up","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"Hi"}]}`},
		{"left out, streamed", "", true,
			`{"model":"up","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"Hi"}],"stream":true,"stream_options":{"include_usage":true}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
				if c.stream {
					ctx.SetContentType("text/event-stream")
					ctx.SetBodyString(oneChunkEvent + "data: [DONE]\n\n")
					return
				}
				ctx.SetContentType("application/json")
				ctx.SetBodyString(plainChatAnswer)
			})
			b := newTestBackend(t, Config{Provider: "openai", BaseURL: up.URL + "/v1", Model: "up", DeveloperRole: c.role})
			in := body
			if c.stream {
				in = strings.TrimSuffix(body, "}") + `,"stream":true}`
			}
			call := chatCall(in, c.stream)
			if c.stream {
				if err := readStreamToEnd(t, b, call); err != nil {
					t.Fatal(err)
				}
			} else {
				var out fasthttp.Response
				var res Result
				if err := b.Send(call, &out, &res); err != nil {
					t.Fatalf("%v: %s", err, out.Body())
				}
			}
			if _, _, sent, _ := up.last(); string(sent) != c.want {
				t.Errorf("upstream got %s\nwant         %s", sent, c.want)
			}
			if string(call.Body) != in {
				t.Errorf("the call's body became %s", call.Body)
			}
		})
	}
}

// developer_role takes developer or system, on the providers whose chat calls go to
// an OpenAI-compatible API as they came.
func TestDeveloperRoleConfig(t *testing.T) {
	for _, c := range []struct {
		provider, role, problem string
	}{
		{"openai", "system", ""},
		{"openai", "developer", ""},
		{"openai", "", ""},
		{"azure", "system", ""},
		{"openai", "System", "developer_role: must be developer (messages go with the role they came with; the default) or system"},
		{"openai", "user", "developer_role: must be developer (messages go with the role they came with; the default) or system"},
		{"anthropic", "system", "developer_role: does not apply to provider anthropic, whose translation sends developer messages as the system prompt already"},
		{"mock", "system", "developer_role: does not apply to provider mock, which answers in process"},
	} {
		cfg := Config{Provider: c.provider, BaseURL: "http://127.0.0.1:1/v1", Model: "m", DeveloperRole: c.role}
		switch c.provider {
		case "azure":
			cfg.Deployment = "d"
		case "mock":
			cfg.BaseURL = ""
		}
		err := cfg.Validate()
		switch {
		case c.problem == "" && err != nil:
			t.Errorf("%s developer_role %q: %v, want it taken", c.provider, c.role, err)
		case c.problem != "" && (err == nil || err.Error() != c.problem):
			t.Errorf("%s developer_role %q: %v, want %q", c.provider, c.role, err, c.problem)
		}
	}
}

func BenchmarkDeveloperAsSystem(b *testing.B) {
	long := strings.Repeat("Write a haiku about the sea and the ships that cross it at night. ", 40)
	for _, c := range []struct{ name, body string }{
		{"developer", `{"model":"m","messages":[{"role":"developer","content":"Answer briefly."},{"role":"user","content":"` + long + `"}],"temperature":0.2}`},
		{"none", `{"model":"m","messages":[{"role":"system","content":"Answer briefly."},{"role":"user","content":"` + long + `"}],"temperature":0.2}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			body := []byte(c.body)
			buf := make([]byte, 0, len(body))
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				buf = developerAsSystem(append(buf[:0], body...))
			}
		})
	}
}
