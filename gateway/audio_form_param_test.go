package gateway

import (
	"encoding/json"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// A form refused for one of the fields the gateway reads names that field in the
// error's param, as a JSON body's refusals do, so that an SDK's error says which part
// to mend; a form that cannot be read at all names none.
func TestAudioFormRefusalNamesField(t *testing.T) {
	t.Parallel()
	mock, addr := startMock(t, mockllm.Options{Seed: 3})
	g := startGateway(t, audioConfig(addr))
	wav := silentWAV(1)
	const b = "XyZ"
	ct := "multipart/form-data; boundary=" + b
	part := func(disposition, value string) string {
		return "--" + b + "\r\nContent-Disposition: form-data; " + disposition + "\r\n\r\n" + value + "\r\n"
	}
	model := part(`name="model"`, "whisper")
	file := part(`name="file"; filename="a.wav"`, string(wav))
	end := "--" + b + "--\r\n"
	for _, tc := range []struct{ name, body, param string }{
		{"model twice", model + file + model + end, "model"},
		{"model over two lines", part(`name="model"`, "whis\r\nper") + file + end, "model"},
		{"model as a file", part(`name="model"; filename="m.txt"`, "whisper") + file + end, "model"},
		{"file twice", model + file + file + end, "file"},
		{"stream not a bool", model + part(`name="stream"`, "maybe") + file + end, "stream"},
		{"stream twice", model + part(`name="stream"`, "true") + part(`name="stream"`, "false") + file + end, "stream"},
		{"stream as a file", model + part(`name="stream"; filename="s"`, "true") + file + end, "stream"},
		{"stream_include_usage not a bool", model + part(`name="stream_include_usage"`, "2") + file + end, "stream_include_usage"},
		{"stream_include_usage twice", model + part(`name="stream_include_usage"`, "1") + part(`name="stream_include_usage"`, "1") + file + end, "stream_include_usage"},
		{"response_format twice", model + part(`name="response_format"`, "json") + part(`name="response_format"`, "text") + file + end, "response_format"},
		{"response_format as a file", model + part(`name="response_format"; filename="r"`, "json") + file + end, "response_format"},
		{"prompt twice", model + part(`name="prompt"`, "a") + part(`name="prompt"`, "b") + file + end, "prompt"},
		{"prompt as a file", model + part(`name="prompt"; filename="p.txt"`, "a") + file + end, "prompt"},
		{"cut body", model + file, ""},
		{"escaped field name", part(`name="mod\el"`, "whisper") + model + file + end, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := postAudio(t, g, "/v1/audio/transcriptions", ct, []byte(tc.body))
			var e struct {
				Error struct {
					Code  string  `json:"code"`
					Param *string `json:"param"`
				} `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || status != 400 || e.Error.Code != "invalid_multipart" {
				t.Fatalf("%d %s (%v), want 400 invalid_multipart", status, body, err)
			}
			switch {
			case tc.param == "" && e.Error.Param != nil:
				t.Fatalf("param %q, want null: %s", *e.Error.Param, body)
			case tc.param != "" && (e.Error.Param == nil || *e.Error.Param != tc.param):
				t.Fatalf("param of %s, want %q", body, tc.param)
			}
		})
	}
	if n := mock.Stats().Requests["/v1/audio/transcriptions"]; n != 0 {
		t.Fatalf("%d refused bodies reached the upstream", n)
	}
}
