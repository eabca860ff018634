package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// nodeSDKHeaders are the request headers the official Node.js SDK (openai 6.x on
// Node 20's undici) sends with every call.
var nodeSDKHeaders = map[string]string{
	"accept":                      "application/json",
	"user-agent":                  "OpenAI/JS 6.49.0",
	"x-stainless-retry-count":     "0",
	"x-stainless-lang":            "js",
	"x-stainless-package-version": "6.49.0",
	"x-stainless-os":              "Linux",
	"x-stainless-arch":            "x64",
	"x-stainless-runtime":         "node",
	"x-stainless-runtime-version": "v20.20.2",
	"authorization":               "Bearer sk-unused",
	"content-type":                "application/json",
	"accept-language":             "*",
	"sec-fetch-mode":              "cors",
	"accept-encoding":             "gzip, deflate",
}

// nodeSDKPost sends body to path as the Node SDK does and returns the status and body.
func nodeSDKPost(t *testing.T, g *gw, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", g.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range nodeSDKHeaders {
		req.Header.Set(k, v)
	}
	// Go's transport would undo a gzip answer by itself; undici's fetch does too, but
	// the gateway answers uncoded anyway. Keep the header as the SDK sends it.
	req.Header.Set("Accept-Encoding", "gzip, deflate")
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}
