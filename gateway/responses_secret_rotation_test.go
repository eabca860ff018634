package gateway

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
)

const rotatedResponseSecret = "fedcba9876543210fedcba9876543210"

// rotatedConfig is signedConfig with the secret being rotated: newSecret signs,
// prevSecret's signatures are still taken.
func rotatedConfig(newSecret, prevSecret, addrA, addrB string) string {
	return strings.Replace(signedConfig(newSecret, addrA, addrB), "  keys:",
		"  previous_response_secret: \""+prevSecret+"\"\n  keys:", 1)
}

// Rotating auth.response_secret without ending conversations, in README's three
// steps: the new secret first taken as auth.previous_response_secret, then the two
// swapped, then the old one dropped. IDs signed under either secret are taken, only
// for their own key, and answers are signed under response_secret; once the old
// secret is dropped, an ID signed only under it is refused as before.
func TestResponsesSecretRotation(t *testing.T) {
	t.Parallel()
	upA, addrA := startResponsesUpstreamID(t, "resp_a")
	_, addrB := startResponsesUpstreamID(t, "resp_b")
	upA.echoPrev.Store(true)
	g := startGateway(t, signedConfig(testResponseSecret, addrA, addrB))
	ca, cb := g.client(option.WithAPIKey("sk-a")), g.client(option.WithAPIKey("sk-b"))
	var old string
	for old == "" || !strings.HasPrefix(old, "resp_a") {
		old = newResponse(t, ca, "").ID
	}
	tag := responseTag("pool", "http://"+addrA+"/v1")
	if old != "resp_a"+tag+wantSignature(testResponseSecret, "team-a", tag, "resp_a") {
		t.Fatalf("ID before the rotation %s", old)
	}

	write := func(cfg string) {
		t.Helper()
		if err := os.WriteFile(g.path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := g.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	// Step one: the new secret is taken, the old one still signs.
	write(rotatedConfig(testResponseSecret, rotatedResponseSecret, addrA, addrB))
	if res := newResponse(t, ca, old); res.ID != old {
		t.Fatalf("step one answers %s, want it signed under the old secret still: %s", res.ID, old)
	}
	// Step two: the new one signs.
	write(rotatedConfig(rotatedResponseSecret, testResponseSecret, addrA, addrB))
	newSigned := "resp_a" + tag + wantSignature(rotatedResponseSecret, "team-a", tag, "resp_a")

	// The old ID continues its conversation on its target; the answer's IDs are
	// signed under the new secret.
	calls := upA.calls()
	res := newResponse(t, ca, old)
	if upA.calls() != calls+1 {
		t.Fatal("the follow-up of an ID signed under the previous secret did not reach its target")
	}
	if res.ID != newSigned || res.PreviousResponseID != newSigned {
		t.Fatalf("answer's IDs %s, %s: want both signed under the new secret, %s", res.ID, res.PreviousResponseID, newSigned)
	}
	got, err := ca.Responses.Get(context.Background(), old, responses.ResponseGetParams{})
	if err != nil {
		t.Fatalf("GET by the old ID: %v", err)
	}
	if got.ID != newSigned {
		t.Fatalf("GET by the old ID answers %s, want %s", got.ID, newSigned)
	}
	newResponse(t, ca, newSigned)
	// A replica still at step one takes the IDs the new secret signs.
	g1 := startGateway(t, rotatedConfig(testResponseSecret, rotatedResponseSecret, addrA, addrB))
	newResponse(t, g1.client(option.WithAPIKey("sk-a")), newSigned)

	// Another key is refused either ID, as before the rotation; so is the old ID
	// signed under some third secret.
	calls = upA.calls()
	for _, id := range []string{old, newSigned} {
		_, err := cb.Responses.New(context.Background(), responses.ResponseNewParams{
			Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")},
			PreviousResponseID: openai.String(id),
		})
		wantAPIError(t, "another key during the rotation", err, 400, "previous_response_not_found")
		_, err = cb.Responses.Get(context.Background(), id, responses.ResponseGetParams{})
		wantAPIError(t, "another key's GET during the rotation", err, 404, "not_found")
	}
	third := "resp_a" + tag + wantSignature("a-third-secret-nobody-configured", "team-a", tag, "resp_a")
	_, err = ca.Responses.Get(context.Background(), third, responses.ResponseGetParams{})
	wantAPIError(t, "a third secret", err, 404, "not_found")
	if upA.calls() != calls {
		t.Fatal("a refused ID went upstream")
	}

	// The rotation done: the old secret's IDs end, the new ones go on.
	write(signedConfig(rotatedResponseSecret, addrA, addrB))
	_, err = ca.Responses.Get(context.Background(), old, responses.ResponseGetParams{})
	wantAPIError(t, "the old ID after the rotation", err, 404, "not_found")
	newResponse(t, ca, newSigned)
}

// auth.previous_response_secret is checked as auth.response_secret is, never quoted,
// and only with a new secret to rotate to.
func TestResponsesPreviousSecretConfig(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	for _, c := range []struct{ auth, want string }{
		{`{response_secret: "` + rotatedResponseSecret + `", previous_response_secret: "old-but-short"}`,
			`auth.previous_response_secret: is 13 bytes: give at least 16`},
		{`{previous_response_secret: "` + testResponseSecret + `"}`,
			`auth.previous_response_secret: is set without auth.response_secret`},
		{`{response_secret: "` + testResponseSecret + `", previous_response_secret: "` + testResponseSecret + `"}`,
			`auth.previous_response_secret: is auth.response_secret itself`},
		{`{response_secret: "` + rotatedResponseSecret + `", previous_response_secret: ""}`,
			`auth.previous_response_secret: is empty`},
		{"\n  response_secret: \"" + rotatedResponseSecret + "\"\n  previous_response_secret: &anchor-like-secret-0123456789\n",
			`auth.previous_response_secret: a value that begins with & or !`},
	} {
		cfg := "auth: " + c.auth + `
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadConfig(path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("auth %s: error %v, want %q", c.auth, err, c.want)
			continue
		}
		for _, secret := range []string{"old-but-short", testResponseSecret, rotatedResponseSecret, "anchor-like"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("auth %s: secret quoted in %v", c.auth, err)
			}
		}
	}
	ok := "auth: {response_secret: \"" + rotatedResponseSecret + "\", previous_response_secret: \"" + testResponseSecret + `"}
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`
	if err := os.WriteFile(path, []byte(ok), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err != nil {
		t.Fatalf("a rotation's config: %v", err)
	}
}
