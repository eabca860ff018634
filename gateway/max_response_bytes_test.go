package gateway

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// embeddingRows are distinct embedding vectors of dims floats written as OpenAI
// writes them (float32, shortest form), values of a unit-length 3072-dimensional
// vector (about ±0.018): a JSON array text per row.
func embeddingRows(n, dims int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	rows := make([][]byte, n)
	for i := range rows {
		b := []byte{'['}
		for d := range dims {
			if d > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendFloat(b, float64(float32(rng.NormFloat64()*0.018)), 'g', -1, 32)
		}
		rows[i] = append(b, ']')
	}
	return rows
}

// floatEmbeddingsUpstream serves OpenAI float embeddings answers of 3072 dimensions
// (text-embedding-3-large), one vector per input of the request (embeddingsRequest),
// written as they are generated (rows cycled from a few distinct ones), with their
// Content-Length, so that the test holds no copy of them. size is the answer's size
// for n inputs.
func floatEmbeddingsUpstream(t *testing.T) (up *httptest.Server, size func(n int) int) {
	rows := embeddingRows(16, 3072)
	head := []byte(`{"object":"list","data":[`)
	tail := func(n int) []byte {
		return []byte(`],"model":"text-embedding-3-large","usage":{"prompt_tokens":` + strconv.Itoa(n*4) + `,"total_tokens":` + strconv.Itoa(n*4) + `}}`)
	}
	item := func(i int) []byte {
		b := make([]byte, 0, 64)
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"object":"embedding","index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		return append(b, `,"embedding":`...)
	}
	size = func(n int) int {
		total := len(head) + len(tail(n))
		for i := range n {
			total += len(item(i)) + len(rows[i%len(rows)]) + 1
		}
		return total
	}
	up = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n := bytes.Count(body, []byte("document number "))
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(size(n)))
		_, _ = w.Write(head)
		for i := range n {
			_, _ = w.Write(item(i))
			_, _ = w.Write(rows[i%len(rows)])
			if _, err := w.Write([]byte{'}'}); err != nil {
				return
			}
		}
		_, _ = w.Write(tail(n))
	}))
	t.Cleanup(up.Close)
	return up, size
}

// embeddingsRequest is an embeddings request of n short inputs asking for floats,
// as the OpenAI Go and Node SDKs send it unless told otherwise.
func embeddingsRequest(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"model":"embed","encoding_format":"float","input":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"document number ` + strconv.Itoa(i) + `"`)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// embedConfig serves the embeddings endpoint embed from upstream; backendKeys are
// more keys of its backend ("" for none).
func embedConfig(upstream, backendKeys string) string {
	if backendKeys != "" {
		backendKeys = ", " + backendKeys
	}
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 8MiB, shutdown_grace: 5s}
backends:
  up: {provider: openai, base_url: "` + upstream + `/v1", model: text-embedding-3-large, timeout: 60s` + backendKeys + `}
endpoints:
  - {name: embed, type: embeddings, routes: [{backend: up}]}
logging: {level: error, access_log: false}
`
}

// TestLargeFloatEmbeddingsBatchPassedOnUnderMaxResponseBytes: a batch of 2048 inputs
// (OpenAI's most per request) to text-embedding-3-large (3072 dimensions) asked for as
// floats (the OpenAI Go and Node SDKs' default) is answered by the upstream with about
// 80 MB of JSON. OpenAI serves it, and nginx in front of an upstream passes it on; the
// gateway buffers every non-streamed answer whole, bounded by the backend's
// max_response_bytes (default 64 MiB), which such a backend raises.
func TestLargeFloatEmbeddingsBatchPassedOnUnderMaxResponseBytes(t *testing.T) {
	t.Parallel()
	const inputs = 2048
	up, sizeOf := floatEmbeddingsUpstream(t)
	size := sizeOf(inputs)
	g := startGateway(t, embedConfig(up.URL, "max_response_bytes: 128MiB"))
	resp, err := http.Post(g.url+"/v1/embeddings", "application/json", bytes.NewReader(embeddingsRequest(inputs)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		t.Fatalf("a legitimate %d x 3072 float embeddings answer of %.1f MB (%.1f MiB) from the upstream, under max_response_bytes 128MiB: the gateway answered %d %s; want 200 with the upstream's answer, as OpenAI serves it and nginx passes it on",
			inputs, float64(size)/1e6, float64(size)/(1<<20), resp.StatusCode, body)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || int(n) != size {
		t.Fatalf("answer of %d bytes (err %v), want the upstream's %d", n, err, size)
	}
}

// The backend's max_response_bytes is the bound a buffered answer is held to: an
// answer over it is the upstream's invalid answer (502 upstream_bad_response), one
// under it is passed on whole.
func TestMaxResponseBytesBoundsBufferedAnswer(t *testing.T) {
	const inputs = 64 // about 2.5 MB
	up, sizeOf := floatEmbeddingsUpstream(t)
	size := sizeOf(inputs)
	for _, c := range []struct {
		name, bound string
		status      int
	}{
		{"over the bound", "max_response_bytes: 1MiB", 502},
		{"under the bound", "max_response_bytes: 4MiB", 200},
		{"under the default", "", 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := startGateway(t, embedConfig(up.URL, c.bound))
			resp, err := http.Post(g.url+"/v1/embeddings", "application/json", bytes.NewReader(embeddingsRequest(inputs)))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != c.status {
				t.Fatalf("a %d-byte answer with %q: status %d, want %d", size, c.bound, resp.StatusCode, c.status)
			}
			switch c.status {
			case 200:
				if len(body) != size {
					t.Errorf("answer of %d bytes, want the upstream's %d", len(body), size)
				}
			default:
				if !bytes.Contains(body, []byte(`"code":"upstream_bad_response"`)) {
					t.Errorf("answer %s, want upstream_bad_response", body)
				}
			}
		})
	}
}

// A backend's max_response_bytes is a size written as server.max_body_bytes is, and
// is refused, naming its line and key, when it is not one or is over 1GiB.
func TestConfigMaxResponseBytes(t *testing.T) {
	const rest = "endpoints:\n  - {name: embed, type: embeddings, routes: [{backend: up}]}\n"
	backend := func(v string) string {
		return "backends:\n  up:\n    provider: openai\n    base_url: http://127.0.0.1:8000/v1\n    model: m\n    max_response_bytes: " + v + "\n" + rest
	}
	for _, c := range []struct {
		value string
		want  int64
	}{{"128MiB", 128 << 20}, {"100MB", 100_000_000}, {"1GiB", 1 << 30}, {"0", 0}} {
		t.Run(c.value, func(t *testing.T) {
			cfg, problems := parseProblems(t, backend(c.value), nil)
			if len(problems) > 0 {
				t.Fatalf("problems = %q", problems)
			}
			if got := int64(cfg.Backends["up"].MaxResponseBytes); got != c.want {
				t.Errorf("max_response_bytes: %s reads as %d, want %d", c.value, got, c.want)
			}
		})
	}
	for _, c := range []struct {
		value string
		want  []string
	}{
		{"2GiB", []string{"t.yaml:6: backends.up.max_response_bytes: must be at most 1GiB: the answer is held whole in memory"}},
		{"lots", []string{"t.yaml:6: backends.up.max_response_bytes: cannot use `lots` as a size (use e.g. 8MiB, 512KB, 1048576)"}},
		{"[1, 2]", []string{"t.yaml:6: backends.up.max_response_bytes: must be a size (e.g. 8MiB, 512KB, 1048576), not a list"}},
	} {
		t.Run(c.value, func(t *testing.T) {
			_, problems := parseProblems(t, backend(c.value), nil)
			if !slices.Equal(problems, c.want) {
				t.Errorf("problems = %q, want %q", problems, c.want)
			}
		})
	}
}
