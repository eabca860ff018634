package providers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"
)

// OpenAI deprecated user for safety_identifier, "a stable identifier used to help
// detect users of your application that may be violating OpenAI's usage policies",
// which is what Anthropic's metadata.user_id is for ("an external identifier for the
// user ... Anthropic may use this id to help detect abuse"). A current client's end
// user reaches Anthropic as the deprecated field's does (README: "`user` is sent as
// `metadata.user_id` in an opaque, stable form").
func TestAnthropicSafetyIdentifierSentAsUserID(t *testing.T) {
	out := anthropicRequest(t, `{"model":"chat","messages":[{"role":"user","content":"Hi"}],"safety_identifier":"alice@example.com"}`)
	var sent struct {
		Metadata *struct {
			UserID string `json:"user_id"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(out, &sent); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("alice@example.com"))
	want := hex.EncodeToString(sum[:16])
	got := ""
	if sent.Metadata != nil {
		got = sent.Metadata.UserID
	}
	if got != want {
		t.Errorf("safety_identifier sent as metadata.user_id %q, want %q (as user is): %s", got, want, out)
	}
}

// safety_identifier, when a non-empty string, names the end user over user, as the
// gateway's sticky key and per: user limits read it; one that is empty or null leaves
// user to name it. Either given as another type is refused under its own name.
func TestAnthropicEndUserPrecedence(t *testing.T) {
	id := func(user string) string {
		sum := sha256.Sum256([]byte(user))
		return hex.EncodeToString(sum[:16])
	}
	for _, c := range []struct{ name, members, want string }{
		{"safety_identifier over user", `"user":"bob","safety_identifier":"alice"`, id("alice")},
		{"safety_identifier before user", `"safety_identifier":"alice","user":"bob"`, id("alice")},
		{"escaped safety_identifier", `"safety_identifier":"alic\u0065"`, id("alice")},
		{"empty safety_identifier leaves user", `"safety_identifier":"","user":"bob"`, id("bob")},
		{"null safety_identifier leaves user", `"safety_identifier":null,"user":"bob"`, id("bob")},
		{"empty safety_identifier alone", `"safety_identifier":""`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var sent struct {
				Metadata *struct {
					UserID string `json:"user_id"`
				} `json:"metadata"`
			}
			out := anthropicRequest(t, `{"messages":[{"role":"user","content":"Hi"}],`+c.members+`}`)
			if err := json.Unmarshal(out, &sent); err != nil {
				t.Fatal(err)
			}
			got := ""
			if sent.Metadata != nil {
				got = sent.Metadata.UserID
			}
			if got != c.want {
				t.Errorf("%s sent as user_id %q, want %q", c.members, got, c.want)
			}
		})
	}
	for _, c := range []struct{ name, members, param string }{
		{"numeric safety_identifier", `"safety_identifier":7,"user":"bob"`, "safety_identifier"},
		{"object safety_identifier", `"safety_identifier":{"id":"a"}`, "safety_identifier"},
		{"numeric user beside safety_identifier", `"safety_identifier":"alice","user":7`, "user"},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := []byte(`{"messages":[{"role":"user","content":"Hi"}],` + c.members + `}`)
			_, rerr := appendAnthropicRequest(nil, body, quoteModel("m"), 16, claudeModel{}, false)
			if rerr == nil || rerr.param != c.param {
				t.Errorf("%s: refusal %v, want one with param %s", c.members, rerr, c.param)
			}
		})
	}
}
