package gateway

import (
	"strconv"
	"testing"
)

// vLLM's request models (pydantic, lax mode, as FastAPI validates them) read a count
// written as a string as Python's int() reads it: "5_000", " 5000", "+5000", "5000.0"
// and "5000 " are all 5000, and so must the token estimate, or a client that writes its
// cap so would be charged default_max_tokens (16) while vLLM generates up to 5000.
func TestTokenEstimateReadsCountStringsAsVLLM(t *testing.T) {
	up, _ := recordingChatUpstream(t)
	forms := []string{`"max_tokens":"5_000"`, `"max_tokens":" 5000"`, `"max_tokens":"+5000"`,
		`"max_tokens":"5000.0"`, `"max_completion_tokens":"5000 "`}
	eps := ""
	for i := range forms {
		eps += `
  - name: small` + strconv.Itoa(i) + `
    type: chat
    routes: [{backend: up}]
    default_max_tokens: 16
    limits: [{per: endpoint, tokens: 100000, window: minute}]
`
	}
	g := startGateway(t, mockConfig(up, "", eps))
	for i, field := range forms {
		resp, body := postWith(t, g.url+"/v1/chat/completions",
			`{"model":"small`+strconv.Itoa(i)+`","messages":[{"role":"user","content":"hi"}],`+field+`}`, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d: %s", field, resp.StatusCode, body)
		}
		rem, _ := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
		if rem > 100000-5000 {
			t.Errorf("%s: x-ratelimit-remaining-tokens %d, want at most %d: vLLM (pydantic lax mode) reads it as a cap of 5000, the estimate as no cap (default_max_tokens 16)",
				field, rem, 100000-5000)
		}
	}
}

// The same for n: pydantic reads "n":"4.0", "n":" 4" or "n":"+4" as 4 completions of
// up to max_tokens each, and so must the estimate.
func TestTokenEstimateReadsChoiceStringsAsVLLM(t *testing.T) {
	up, _ := recordingChatUpstream(t)
	forms := []string{`"n":"4.0"`, `"n":" 4"`, `"n":"+4"`}
	eps := ""
	for i := range forms {
		eps += `
  - name: small` + strconv.Itoa(i) + `
    type: chat
    routes: [{backend: up}]
    limits: [{per: endpoint, tokens: 100000, window: minute}]
`
	}
	g := startGateway(t, mockConfig(up, "", eps))
	for i, field := range forms {
		resp, body := postWith(t, g.url+"/v1/chat/completions",
			`{"model":"small`+strconv.Itoa(i)+`","max_tokens":5000,"messages":[{"role":"user","content":"hi"}],`+field+`}`, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d: %s", field, resp.StatusCode, body)
		}
		rem, _ := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
		if rem > 100000-4*5000 {
			t.Errorf("%s: x-ratelimit-remaining-tokens %d, want at most %d: vLLM (pydantic lax mode) generates 4 completions, the estimate counts 1",
				field, rem, 100000-4*5000)
		}
	}
}
