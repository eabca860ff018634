package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
)

const testResponseSecret = "0123456789abcdef0123456789abcdef"

// signedConfig is a gateway with two keys, auth.response_secret set, in front of a
// two-replica pool.
func signedConfig(secret, addrA, addrB string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
auth:
  response_secret: "` + secret + `"
  keys:
    - {name: team-a, key: sk-a}
    - {name: team-b, key: sk-b}
backends:
  pool: {provider: openai, targets: ["http://` + addrA + `/v1", "http://` + addrB + `/v1"], model: m, balance: round_robin}
endpoints:
  - {name: chat, type: chat, routes: [{backend: pool}]}
`
}

// wantSignature is the signature README describes, computed here on its own: the first
// 8 bytes of HMAC-SHA256(secret, uint16 length of the key's name, the name, the target's
// tag, the ID), in hex.
func wantSignature(secret, key, tag, id string) string {
	h := hmac.New(sha256.New, []byte(secret))
	var n [2]byte
	binary.BigEndian.PutUint16(n[:], uint16(len(key)))
	h.Write(n[:])
	h.Write([]byte(key))
	h.Write([]byte(tag))
	h.Write([]byte(id))
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// signedBenchConfig is benchConfig with keys and auth.response_secret: response IDs
// signed for the key.
func signedBenchConfig(addr string) string {
	return strings.Replace(benchConfig(addr), "backends:", `auth:
  response_secret: "`+testResponseSecret+`"
  keys: [{name: team-a, key: sk-a}, {name: team-b, key: sk-b}]
backends:`, 1)
}

// signedID is id tagged for backend "up" at addr and signed for key team-a.
func signedID(addr, id string) string {
	tag := responseTag("up", "http://"+addr+"/v1")
	return id + tag + wantSignature(testResponseSecret, "team-a", tag, id)
}

func newResponse(t *testing.T, c openai.Client, prev string) *responses.Response {
	t.Helper()
	p := responses.ResponseNewParams{Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")}}
	if prev != "" {
		p.PreviousResponseID = openai.String(prev)
	}
	res, err := c.Responses.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func wantAPIError(t *testing.T, what string, err error, status int, code string) {
	t.Helper()
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != status || ae.Code != code {
		t.Fatalf("%s: %v, want %d %s", what, err, status, code)
	}
	if strings.Contains(ae.Message, testResponseSecret) || strings.Contains(ae.RawJSON(), "sk-") {
		t.Fatalf("%s: a secret in %s", what, ae.RawJSON())
	}
}

// With auth.response_secret, a response ID is signed for the key it was answered to:
// that key continues, reads, lists and deletes it on the replica that stored it;
// another key holding the ID, with its tag, another key's signature on it, the
// unsigned tag or none, is refused as if the response did not exist, and nothing
// goes upstream.
func TestResponsesSignedForKey(t *testing.T) {
	t.Parallel()
	upA, addrA := startResponsesUpstreamID(t, "resp_a")
	upB, addrB := startResponsesUpstreamID(t, "resp_b")
	upA.echoPrev.Store(true)
	g := startGateway(t, signedConfig(testResponseSecret, addrA, addrB))
	ca := g.client(option.WithAPIKey("sk-a"))
	cb := g.client(option.WithAPIKey("sk-b"))
	ctx := context.Background()

	ids := map[string]string{}
	for range 2 {
		res := newResponse(t, ca, "")
		orig, tag, ok := strings.Cut(res.ID, "-tg")
		if !ok || len(tag) != respTagHex+respMACHex {
			t.Fatalf("ID %s: no signed tag", res.ID)
		}
		addr := addrA
		if orig == "resp_b" {
			addr = addrB
		}
		target := responseTag("pool", "http://"+addr+"/v1")
		if want := orig + target + wantSignature(testResponseSecret, "team-a", target, orig); res.ID != want {
			t.Fatalf("ID %s, want %s", res.ID, want)
		}
		ids[orig] = res.ID
	}
	if len(ids) != 2 {
		t.Fatalf("ids %v", ids)
	}
	bRes := newResponse(t, cb, "")
	if bRes.ID == ids[strings.SplitN(bRes.ID, "-tg", 2)[0]] {
		t.Fatalf("two keys got one ID %s", bRes.ID)
	}

	idA := ids["resp_a"]
	// The owner continues it on its replica; the answer names the ID as sent.
	before := upA.calls()
	follow := newResponse(t, ca, idA)
	if upA.calls() != before+1 {
		t.Fatal("follow-up went elsewhere")
	}
	if _, body := upA.last(); body["previous_response_id"] != "resp_a" {
		t.Fatalf("sent previous_response_id %v", body["previous_response_id"])
	}
	if follow.PreviousResponseID != idA {
		t.Fatalf("answer's previous_response_id %s, want %s", follow.PreviousResponseID, idA)
	}
	got, err := ca.Responses.Get(ctx, idA, responses.ResponseGetParams{})
	if err != nil || got.ID != idA {
		t.Fatalf("owner's get: %v %+v", err, got)
	}
	if _, err := ca.Responses.InputItems.List(ctx, idA, responses.InputItemListParams{}); err != nil {
		t.Fatal(err)
	}

	// Everyone else is refused.
	origA, tagA, _ := strings.Cut(idA, "-tg")
	_, tagB, _ := strings.Cut(bRes.ID, "-tg")
	flip := []byte(idA)
	flip[len(flip)-1] ^= 1
	forged := []struct{ key, id string }{
		{"sk-b", idA},   // another key's ID
		{"sk-b", origA}, // the tag cut
		{"sk-b", origA + "-tg" + tagA[:respTagHex]},     // the unsigned tag
		{"sk-b", origA + "-tg" + tagB},                  // the key's own signature on it
		{"sk-a", string(flip)},                          // one digit changed
		{"sk-a", origA + "-tg" + tagA[:respTagHex]},     // the owner, unsigned
		{"sk-a", strings.ToUpper(idA[:4]) + idA[4:]},    // another ID
		{"sk-a", idA + "0"},                             // longer
		{"sk-a", origA + "-tg" + strings.ToUpper(tagA)}, // hex in capitals
	}
	for _, f := range forged {
		c := g.client(option.WithAPIKey(f.key))
		callsA, callsB := upA.calls(), upB.calls()
		_, err := c.Responses.New(ctx, responses.ResponseNewParams{
			Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")},
			PreviousResponseID: openai.String(f.id),
		})
		wantAPIError(t, f.key+" continuing "+f.id, err, 400, "previous_response_not_found")
		var ae *openai.Error
		if errors.As(err, &ae) && (ae.Param != "previous_response_id" || !strings.Contains(ae.Message, f.id)) {
			t.Fatalf("refusal %s", ae.RawJSON())
		}
		_, err = c.Responses.Get(ctx, f.id, responses.ResponseGetParams{})
		wantAPIError(t, f.key+" reading "+f.id, err, 404, "not_found")
		_, err = c.Responses.InputItems.List(ctx, f.id, responses.InputItemListParams{})
		wantAPIError(t, f.key+" listing "+f.id, err, 404, "not_found")
		_, err = c.Responses.Cancel(ctx, f.id)
		wantAPIError(t, f.key+" cancelling "+f.id, err, 404, "not_found")
		err = c.Responses.Delete(ctx, f.id)
		wantAPIError(t, f.key+" deleting "+f.id, err, 404, "not_found")
		if upA.calls() != callsA || upB.calls() != callsB {
			t.Fatalf("%s with %s reached an upstream", f.id, f.key)
		}
	}

	// The owner's stream: every event carrying the response names it by one signed ID.
	status, raw := postResponsesKey(t, g, "sk-a", `{"model":"chat","input":"x","stream":true,"previous_response_id":"`+idA+`"}`)
	if status != 200 {
		t.Fatalf("stream: %d %s", status, raw)
	}
	n := strings.Count(raw, `"id":"resp_a-tg`)
	if n < 2 || strings.Count(raw, `"id":"`+idA+`"`) != n {
		t.Fatalf("stream's IDs:\n%s", raw)
	}
	if strings.Count(raw, `"previous_response_id":"`+idA+`"`) != n {
		t.Fatalf("stream's previous_response_id:\n%s", raw)
	}
	if err := ca.Responses.Delete(ctx, idA); err != nil {
		t.Fatal(err)
	}
}

// Gateway replicas with one config sign alike: a response made through one is
// continued through another. A replica with another secret refuses it, and so does
// the first once a reload changes its secret.
func TestResponsesSignedAcrossReplicas(t *testing.T) {
	t.Parallel()
	upA, addrA := startResponsesUpstreamID(t, "resp_a")
	_, addrB := startResponsesUpstreamID(t, "resp_b")
	upA.echoPrev.Store(true)
	g1 := startGateway(t, signedConfig(testResponseSecret, addrA, addrB))
	g2 := startGateway(t, signedConfig(testResponseSecret, addrA, addrB))
	g3 := startGateway(t, signedConfig("another-secret-of-32-characters!", addrA, addrB))
	var id string
	for id == "" || !strings.HasPrefix(id, "resp_a") {
		id = newResponse(t, g1.client(option.WithAPIKey("sk-a")), "").ID
	}
	before := upA.calls()
	if res := newResponse(t, g2.client(option.WithAPIKey("sk-a")), id); res.PreviousResponseID != id {
		t.Fatalf("through the second replica: %s", res.PreviousResponseID)
	}
	if upA.calls() != before+1 {
		t.Fatal("the second replica sent the follow-up elsewhere")
	}
	c3 := g3.client(option.WithAPIKey("sk-a"))
	_, err := c3.Responses.New(context.Background(), responses.ResponseNewParams{
		Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")},
		PreviousResponseID: openai.String(id),
	})
	wantAPIError(t, "another secret", err, 400, "previous_response_not_found")

	if err := os.WriteFile(g1.path, []byte(signedConfig("another-secret-of-32-characters!", addrA, addrB)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g1.Reload(); err != nil {
		t.Fatal(err)
	}
	c1 := g1.client(option.WithAPIKey("sk-a"))
	_, err = c1.Responses.Get(context.Background(), id, responses.ResponseGetParams{})
	wantAPIError(t, "after the secret changed", err, 404, "not_found")
}

// Without keys a secret still signs the IDs (for no key): they are the gateway's
// and unaltered, or refused.
func TestResponsesSignedWithoutKeys(t *testing.T) {
	t.Parallel()
	up, addr := startResponsesUpstreamID(t, "resp_a")
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
auth: {response_secret: "`+testResponseSecret+`"}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
	c := g.client()
	id := newResponse(t, c, "").ID
	target := responseTag("up", "http://"+addr+"/v1")
	if id != "resp_a"+target+wantSignature(testResponseSecret, "", target, "resp_a") {
		t.Fatalf("ID %s", id)
	}
	newResponse(t, c, id)
	calls := up.calls()
	_, err := c.Responses.New(context.Background(), responses.ResponseNewParams{
		Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")},
		PreviousResponseID: openai.String("resp_a"),
	})
	wantAPIError(t, "untagged", err, 400, "previous_response_not_found")
	if up.calls() != calls {
		t.Fatal("refused follow-up went upstream")
	}
}

// A secret too short to sign with is refused by name and line, never quoted; with keys
// and no secret, the gateway says at start that a response ID is a bearer token.
func TestResponsesSecretConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "tollgate.yaml")
	cfg := `
auth:
  mode: none
  response_secret: "short-secret"
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	if err == nil || !strings.Contains(err.Error(), path+":4: auth.response_secret: is 12 bytes: give at least 16") {
		t.Fatalf("error %v", err)
	}
	if strings.Contains(err.Error(), "short-secret") {
		t.Fatalf("secret quoted: %v", err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(cfg, `"short-secret"`, `[short-secret]`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil || strings.Contains(err.Error(), "short-secret") {
		t.Fatalf("error %v", err)
	}

	_, addr := startResponsesUpstreamID(t, "resp_a")
	keys := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
auth:
  keys:
    - {name: team-a, key: sk-a}
    - {name: team-b, key: sk-b}
backends:
  up: {provider: openai, base_url: "http://` + addr + `/v1", model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`
	g := startGateway(t, keys)
	if !strings.Contains(g.logs.String(), "auth.response_secret is not set") {
		t.Fatalf("no warning in %s", g.logs.String())
	}
	// Keys kept to backends of their own share no store: nothing to warn of.
	apart := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
auth:
  keys:
    - {name: team-a, key: sk-a, endpoints: [a]}
    - {name: team-b, key: sk-b, endpoints: [b]}
backends:
  up-a: {provider: openai, base_url: "http://`+addr+`/v1", model: m}
  up-b: {provider: openai, base_url: "http://`+addr+`/v1", model: m}
endpoints:
  - {name: a, type: chat, routes: [{backend: up-a}]}
  - {name: b, type: chat, routes: [{backend: up-b}]}
`)
	if strings.Contains(apart.logs.String(), "response_secret") {
		t.Fatalf("warned of keys apart: %s", apart.logs.String())
	}
	g2 := startGateway(t, strings.Replace(keys, "auth:\n", "auth:\n  response_secret: "+testResponseSecret+"\n", 1))
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && g2.logs.String() == "" {
		time.Sleep(10 * time.Millisecond)
	}
	if l := g2.logs.String(); strings.Contains(l, "response_secret") || strings.Contains(l, testResponseSecret) {
		t.Fatalf("logs %s", l)
	}
}
