package mockllm

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
)

// sdk is the official OpenAI client on h, with key (none when empty).
func (h *harness) sdk(key string) openai.Client {
	opts := []option.RequestOption{
		option.WithBaseURL("http://mock.test/v1"),
		option.WithUnsafeAllowHTTP(),
		option.WithHTTPClient(h.client),
		option.WithMaxRetries(0),
	}
	if key != "" {
		opts = append(opts, option.WithAPIKey(key))
	}
	return openai.NewClient(opts...)
}

func respText(s string) responses.ResponseNewParamsInputUnion {
	return responses.ResponseNewParamsInputUnion{OfString: openai.String(s)}
}

var respIDPattern = regexp.MustCompile(`^resp_[0-9a-f]{48}$`)

// apiError is the SDK's error for err, or fails the test.
func apiError(t *testing.T, err error) *openai.Error {
	t.Helper()
	var e *openai.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v, want the API's", err)
	}
	return e
}

// streamed is a Responses API stream as the SDK read it.
type streamed struct {
	types  []string
	text   string // the deltas joined
	final  responses.Response
	err    error
	events int
}

func readStream(t *testing.T, client openai.Client, p responses.ResponseNewParams, opts ...option.RequestOption) streamed {
	t.Helper()
	s := client.Responses.NewStreaming(context.Background(), p, opts...)
	var out streamed
	for s.Next() {
		ev := s.Current()
		if ev.SequenceNumber != int64(out.events) {
			t.Errorf("event %d (%s) has sequence_number %d", out.events, ev.Type, ev.SequenceNumber)
		}
		out.events++
		out.types = append(out.types, ev.Type)
		switch ev.Type {
		case "response.output_text.delta":
			out.text += ev.Delta
		case "response.completed", "response.incomplete":
			out.final = ev.Response
		}
	}
	out.err = s.Err()
	_ = s.Close()
	return out
}

// wantEvents is OpenAI's event order for one message of n text deltas, ending with
// terminal.
func wantEvents(n int, terminal string) []string {
	evs := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"}
	for range n {
		evs = append(evs, "response.output_text.delta")
	}
	return append(evs, "response.output_text.done", "response.content_part.done", "response.output_item.done", terminal)
}

// TestResponsesSDK drives POST /v1/responses and the stored-response routes with the
// official OpenAI Go SDK.
func TestResponsesSDK(t *testing.T) {
	h := start(t, Options{MaxTokens: 16, APIKey: "sk-mock"})
	client := h.sdk("sk-mock")
	ctx := context.Background()
	base := responses.ResponseNewParams{
		Model:        "mock-1",
		Input:        respText("Say something about gateways"),
		Instructions: openai.String("be brief"),
		Temperature:  openai.Float(0.5),
		Metadata:     map[string]string{"team": "a"},
		User:         openai.String("u-1"),
	}

	var first *responses.Response
	t.Run("a plain answer", func(t *testing.T) {
		var err error
		first, err = client.Responses.New(ctx, base)
		if err != nil {
			t.Fatal(err)
		}
		r := first
		if !respIDPattern.MatchString(r.ID) || r.Object != "response" || r.Status != "completed" || r.Model != "mock-1" || r.CreatedAt != float64(fixedNow().Unix()) {
			t.Errorf("%s", r.RawJSON())
		}
		if len(r.Output) != 1 || r.Output[0].Type != "message" || !strings.HasPrefix(r.Output[0].ID, "msg_") || r.Output[0].Role != "assistant" || r.Output[0].Status != "completed" {
			t.Fatalf("output %s", r.JSON.Output.Raw())
		}
		text := r.OutputText()
		if text == "" || !strings.HasSuffix(text, ".") || r.Output[0].Content[0].Type != "output_text" {
			t.Errorf("text %q", text)
		}
		u := r.Usage
		// "Say something about gateways" and "be brief": 36 bytes, 9 tokens.
		if u.InputTokens != 9 || u.OutputTokens != int64(len(strings.Fields(text))) || u.TotalTokens != u.InputTokens+u.OutputTokens ||
			u.InputTokensDetails.CachedTokens != 0 || u.OutputTokensDetails.ReasoningTokens != 0 {
			t.Errorf("usage %s for %q", u.RawJSON(), text)
		}
		if r.Instructions.OfString != "be brief" || r.Temperature != 0.5 || r.TopP != 1 || r.Metadata["team"] != "a" || r.User != "u-1" ||
			r.ToolChoice.OfToolChoiceMode != "auto" || r.Text.Format.Type != "text" || r.Truncation != "disabled" || r.JSON.ExtraFields["store"].Raw() != "true" ||
			!r.ParallelToolCalls || r.JSON.PreviousResponseID.Raw() != "null" || r.JSON.Error.Raw() != "null" || r.ServiceTier != "auto" {
			t.Errorf("echoed members %s", r.RawJSON())
		}
	})
	if first == nil {
		t.Fatal("no first answer")
	}

	t.Run("a second answer has an id of its own and the same text", func(t *testing.T) {
		r, err := client.Responses.New(ctx, base)
		if err != nil {
			t.Fatal(err)
		}
		if r.ID == first.ID || r.Output[0].ID == first.Output[0].ID || r.OutputText() != first.OutputText() {
			t.Errorf("first %s %q, second %s %q", first.ID, first.OutputText(), r.ID, r.OutputText())
		}
	})

	t.Run("a stream sends OpenAI's events and assembles to the plain answer", func(t *testing.T) {
		s := readStream(t, client, base)
		if s.err != nil {
			t.Fatal(s.err)
		}
		n := int(first.Usage.OutputTokens)
		if strings.Join(s.types, ",") != strings.Join(wantEvents(n, "response.completed"), ",") {
			t.Errorf("events %v", s.types)
		}
		if s.text != first.OutputText() || s.final.OutputText() != s.text || s.final.Status != "completed" {
			t.Errorf("deltas %q, completed %q, plain %q", s.text, s.final.OutputText(), first.OutputText())
		}
		if s.final.Usage.InputTokens != first.Usage.InputTokens || s.final.Usage.OutputTokens != first.Usage.OutputTokens || s.final.Usage.TotalTokens != first.Usage.TotalTokens {
			t.Errorf("stream usage %s, plain %s", s.final.Usage.RawJSON(), first.Usage.RawJSON())
		}
		if !respIDPattern.MatchString(s.final.ID) || s.final.ID == first.ID {
			t.Errorf("stream id %q", s.final.ID)
		}
	})

	t.Run("max_output_tokens makes it incomplete", func(t *testing.T) {
		p := base
		p.MaxOutputTokens = openai.Int(3)
		r, err := client.Responses.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != "incomplete" || r.IncompleteDetails.Reason != "max_output_tokens" || r.Usage.OutputTokens != 3 || r.MaxOutputTokens != 3 ||
			r.Output[0].Status != "incomplete" || r.JSON.CompletedAt.Raw() != "null" {
			t.Errorf("%s", r.RawJSON())
		}
		s := readStream(t, client, p)
		if s.err != nil {
			t.Fatal(s.err)
		}
		if strings.Join(s.types, ",") != strings.Join(wantEvents(3, "response.incomplete"), ",") ||
			s.final.Status != "incomplete" || s.final.IncompleteDetails.Reason != "max_output_tokens" || s.text != r.OutputText() {
			t.Errorf("events %v, final %s", s.types, s.final.RawJSON())
		}
	})

	var follow *responses.Response
	t.Run("previous_response_id continues the conversation", func(t *testing.T) {
		p := responses.ResponseNewParams{
			Model:              "mock-1",
			Input:              responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{responses.ResponseInputItemParamOfMessage("and more", responses.EasyInputMessageRoleUser)}},
			PreviousResponseID: openai.String(first.ID),
		}
		var err error
		follow, err = client.Responses.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		// The first turn's input (less its instructions, which OpenAI does not carry
		// over: 28 bytes, 7 tokens) and output, then "and more" (2 tokens).
		if want := 7 + first.Usage.OutputTokens + 2; follow.Usage.InputTokens != want || follow.PreviousResponseID != first.ID {
			t.Errorf("input_tokens %d, want %d: %s", follow.Usage.InputTokens, want, follow.RawJSON())
		}
		alone, err := client.Responses.New(ctx, responses.ResponseNewParams{Model: "mock-1", Input: p.Input})
		if err != nil {
			t.Fatal(err)
		}
		if alone.OutputText() == follow.OutputText() || alone.Usage.InputTokens != 2 {
			t.Errorf("the conversation changed nothing: %q, %q", alone.OutputText(), follow.OutputText())
		}
		s := readStream(t, client, p)
		if s.err != nil || s.text != follow.OutputText() || s.final.Usage.InputTokens != follow.Usage.InputTokens {
			t.Errorf("streamed follow-up %q (%v), plain %q", s.text, s.err, follow.OutputText())
		}
	})

	t.Run("an unknown previous_response_id is OpenAI's 404", func(t *testing.T) {
		p := base
		p.PreviousResponseID = openai.String("resp_unknown")
		_, err := client.Responses.New(ctx, p)
		e := apiError(t, err)
		if e.StatusCode != 404 || e.Code != "previous_response_not_found" || e.Param != "previous_response_id" || e.Type != "invalid_request_error" ||
			e.Message != "Previous response with id 'resp_unknown' not found." {
			t.Errorf("%d %s", e.StatusCode, e.RawJSON())
		}
	})

	t.Run("Get returns the stored object", func(t *testing.T) {
		r, err := client.Responses.Get(ctx, first.ID, responses.ResponseGetParams{})
		if err != nil {
			t.Fatal(err)
		}
		if r.RawJSON() != first.RawJSON() {
			t.Errorf("stored %s\nanswered %s", r.RawJSON(), first.RawJSON())
		}
	})

	t.Run("input items list the input, each with an id", func(t *testing.T) {
		page, err := client.Responses.InputItems.List(ctx, first.ID, responses.InputItemListParams{})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Data) != 1 || page.HasMore {
			t.Fatalf("%s", page.RawJSON())
		}
		it := page.Data[0]
		if it.Type != "message" || it.Role != "user" || !strings.HasPrefix(it.ID, "msg_") || it.ID == first.Output[0].ID ||
			len(it.Content.OfInputItemContentList) != 1 || it.Content.OfInputItemContentList[0].Text != "Say something about gateways" {
			t.Errorf("%s", it.RawJSON())
		}
	})

	t.Run("Cancel refuses a response that did not run in the background", func(t *testing.T) {
		_, err := client.Responses.Cancel(ctx, first.ID)
		if e := apiError(t, err); e.StatusCode != 400 || e.Message != "Cannot cancel a synchronous response." {
			t.Errorf("%d %s", e.StatusCode, e.RawJSON())
		}
		_, err = client.Responses.Cancel(ctx, "resp_unknown")
		if e := apiError(t, err); e.StatusCode != 404 {
			t.Errorf("%d %s", e.StatusCode, e.RawJSON())
		}
	})

	t.Run("Delete removes it", func(t *testing.T) {
		if err := client.Responses.Delete(ctx, follow.ID); err != nil {
			t.Fatal(err)
		}
		_, err := client.Responses.Get(ctx, follow.ID, responses.ResponseGetParams{})
		e := apiError(t, err)
		if e.StatusCode != 404 || e.Message != "Response with id '"+follow.ID+"' not found." || e.Type != "invalid_request_error" || e.JSON.Param.Raw() != "null" {
			t.Errorf("%d %s", e.StatusCode, e.RawJSON())
		}
		if err := client.Responses.Delete(ctx, follow.ID); apiError(t, err).StatusCode != 404 {
			t.Errorf("second delete: %v", err)
		}
		p := base
		p.PreviousResponseID = openai.String(follow.ID)
		if _, err := client.Responses.New(ctx, p); apiError(t, err).StatusCode != 404 {
			t.Errorf("follow-up of a deleted response: %v", err)
		}
	})

	t.Run("store false is not kept", func(t *testing.T) {
		p := base
		p.Store = openai.Bool(false)
		r, err := client.Responses.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if store := r.JSON.ExtraFields["store"].Raw(); store != "false" {
			t.Errorf("store %s", store)
		}
		if _, err := client.Responses.Get(ctx, r.ID, responses.ResponseGetParams{}); apiError(t, err).StatusCode != 404 {
			t.Errorf("kept: %v", err)
		}
	})

	t.Run("unknown model is the SDK's 404 error", func(t *testing.T) {
		p := base
		p.Model = "gpt-nope"
		_, err := client.Responses.New(ctx, p)
		if e := apiError(t, err); e.StatusCode != 404 || e.Param != "model" || e.Message != "The model `gpt-nope` does not exist." {
			t.Errorf("%d %s", e.StatusCode, e.RawJSON())
		}
	})

	t.Run("background is refused", func(t *testing.T) {
		p := base
		p.Background = openai.Bool(true)
		_, err := client.Responses.New(ctx, p)
		if e := apiError(t, err); e.StatusCode != 400 || e.Param != "background" {
			t.Errorf("%d %s", e.StatusCode, e.RawJSON())
		}
	})

	t.Run("a cut stream is an SDK error without the terminal event", func(t *testing.T) {
		s := readStream(t, client, base, option.WithHeader("x-mock-cut-after", "2"))
		if s.err == nil || strings.Join(s.types, ",") != strings.Join(wantEvents(2, "")[:6], ",") {
			t.Errorf("err %v, events %v", s.err, s.types)
		}
	})

	t.Run("an injected status is the SDK's error", func(t *testing.T) {
		_, err := client.Responses.New(ctx, base, option.WithHeader("x-mock-status", "503"))
		if e := apiError(t, err); e.StatusCode != 503 {
			t.Errorf("%v", err)
		}
	})

	t.Run("the API key is required", func(t *testing.T) {
		// vLLM's 401 body, {"error":"Unauthorized"}, is no OpenAI error the SDK reads.
		for _, c := range []struct{ method, path, body string }{
			{"POST", "/v1/responses", `{"input":"x"}`},
			{"GET", "/v1/responses/" + first.ID, ""},
			{"GET", "/v1/responses/" + first.ID + "/input_items", ""},
			{"DELETE", "/v1/responses/" + first.ID, ""},
		} {
			resp, b := h.must(c.method, c.path, c.body, "Authorization", "Bearer sk-wrong")
			if resp.StatusCode != 401 {
				t.Errorf("%s %s: %d %s", c.method, c.path, resp.StatusCode, b)
			}
		}
	})
}

// TestResponsesRequests covers the wire details the SDK does not show: refusals,
// methods, echoed members, the x-mock-* headers and input item listing.
func TestResponsesRequests(t *testing.T) {
	h := start(t, Options{MaxTokens: 8})
	post := func(body string, hdr ...string) (int, map[string]any) {
		t.Helper()
		resp, b := h.must("POST", "/v1/responses", body, hdr...)
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		return resp.StatusCode, v
	}
	refusals := []struct {
		name, body, param string
	}{
		{"malformed JSON", `{"input":`, ""},
		{"missing input", `{"model":"mock-1"}`, "input"},
		{"empty input", `{"input":""}`, "input"},
		{"empty input list", `{"input":[]}`, "input"},
		{"input of a wrong type", `{"input":3}`, "input"},
		{"an item's unknown role", `{"input":[{"role":"bot","content":"x"}]}`, "input[0].role"},
		{"an item without content", `{"input":["x"]}`, "input[0]"},
		{"an unknown item type", `{"input":[{"type":"telepathy"}]}`, "input[0].type"},
		{"a function output without call_id", `{"input":[{"type":"function_call_output","output":"1"}]}`, "input[0].call_id"},
		{"an unknown part type", `{"input":[{"role":"user","content":[{"type":"video","text":"x"}]}]}`, "input[0].content"},
		{"background", `{"input":"x","background":true}`, "background"},
		{"max_output_tokens under 1", `{"input":"x","max_output_tokens":0}`, "max_output_tokens"},
		{"stream not a boolean", `{"input":"x","stream":"yes"}`, "stream"},
		{"instructions not a string", `{"input":"x","instructions":["a"]}`, "instructions"},
		{"metadata not an object", `{"input":"x","metadata":[]}`, "metadata"},
		{"an unknown truncation", `{"input":"x","truncation":"middle"}`, "truncation"},
		{"top_p out of range", `{"input":"x","top_p":2}`, "top_p"},
	}
	for _, tc := range refusals {
		t.Run("400: "+tc.name, func(t *testing.T) {
			code, v := post(tc.body)
			e, _ := v["error"].(map[string]any)
			param, _ := e["param"].(string)
			if code != 400 || e == nil || param != tc.param || e["message"] == "" {
				t.Errorf("%d %v, want 400 with param %q", code, v, tc.param)
			}
		})
	}

	t.Run("echoed members come back compact", func(t *testing.T) {
		resp, b := h.must("POST", "/v1/responses", `{"input":"x","tools":[ {"type": "function", "name":"f"} ],"tool_choice":{ "type":"function","name":"f" },`+
			`"text":{"format":{"type":"text"}, "verbosity":"low"},"reasoning":{"effort":"low"},"service_tier":"flex","safety_identifier":"s",`+
			`"prompt_cache_key":"k","parallel_tool_calls":false,"truncation":"auto","top_logprobs":2,"top_p":0.9,"stream":false,"store":false}`)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		for _, want := range []string{`"tools":[{"type":"function","name":"f"}]`, `"tool_choice":{"type":"function","name":"f"}`,
			`"text":{"format":{"type":"text"},"verbosity":"low"}`, `"reasoning":{"effort":"low"}`, `"service_tier":"flex"`, `"safety_identifier":"s"`,
			`"prompt_cache_key":"k"`, `"parallel_tool_calls":false`, `"truncation":"auto"`, `"top_logprobs":2`, `"top_p":0.9`, `"store":false`} {
			if !strings.Contains(string(b), want) {
				t.Errorf("no %s in %s", want, b)
			}
		}
	})

	t.Run("x-mock headers: tokens, cached tokens, service tier", func(t *testing.T) {
		_, v := post(`{"input":"twelve bytes"}`, "x-mock-tokens", "2", "x-mock-cached-tokens", "2", "x-mock-service-tier", "priority")
		u := v["usage"].(map[string]any)
		d := u["input_tokens_details"].(map[string]any)
		if u["output_tokens"] != 2.0 || u["input_tokens"] != 3.0 || d["cached_tokens"] != 2.0 || v["service_tier"] != "priority" {
			t.Errorf("%v", v)
		}
	})

	t.Run("other methods are refused with 405", func(t *testing.T) {
		for _, c := range []struct{ method, path, allow string }{
			{"GET", "/v1/responses", "POST"},
			{"PUT", "/v1/responses/resp_x", "GET, DELETE"},
			{"POST", "/v1/responses/resp_x/input_items", "GET"},
			{"GET", "/v1/responses/resp_x/cancel", "POST"},
		} {
			resp, b := h.must(c.method, c.path, "")
			if resp.StatusCode != 405 || resp.Header.Get("Allow") != c.allow {
				t.Errorf("%s %s: %d %q %s", c.method, c.path, resp.StatusCode, resp.Header.Get("Allow"), b)
			}
		}
	})

	t.Run("input items: ids kept or given, newest first, pages", func(t *testing.T) {
		code, v := post(`{"input":[{"role":"system","content":"sys"},{"type":"message","role":"user","content":[{"type":"input_text","text":"look"},{"type":"input_image","image_url":"data:,"}]},` +
			`{"type":"function_call","id":"fc_1","call_id":"c1","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c1","output":"42"},` +
			`{"role":"assistant","content":"done"}]}`)
		if code != 200 {
			t.Fatalf("%d %v", code, v)
		}
		id := v["id"].(string)
		list := func(query string) map[string]any {
			t.Helper()
			resp, b := h.must("GET", "/v1/responses/"+id+"/input_items"+query, "")
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			return decode[map[string]any](t, b)
		}
		types := func(l map[string]any) (s []string) {
			for _, it := range l["data"].([]any) {
				m := it.(map[string]any)
				s = append(s, m["type"].(string)+":"+m["id"].(string)[:3])
				if m["status"] != "completed" {
					t.Errorf("item %v", m)
				}
			}
			return s
		}
		asc := list("?order=asc")
		if got := strings.Join(types(asc), ","); got != "message:msg,message:msg,function_call:fc_,function_call_output:fco,message:msg" || asc["has_more"] != false {
			t.Errorf("asc %s: %v", got, asc)
		}
		data := asc["data"].([]any)
		if data[2].(map[string]any)["id"] != "fc_1" || asc["first_id"] != data[0].(map[string]any)["id"] || asc["last_id"] != data[4].(map[string]any)["id"] {
			t.Errorf("ids: %v", asc)
		}
		if c := data[4].(map[string]any)["content"].([]any)[0].(map[string]any); c["type"] != "output_text" || c["text"] != "done" {
			t.Errorf("assistant content %v", c)
		}
		desc := list("?limit=2")
		if got := strings.Join(types(desc), ","); got != "message:msg,function_call_output:fco" || desc["has_more"] != true {
			t.Errorf("desc, limit 2: %s %v", got, desc)
		}
		next := list("?limit=2&after=" + desc["last_id"].(string))
		if got := strings.Join(types(next), ","); got != "function_call:fc_,message:msg" || next["has_more"] != true {
			t.Errorf("next page: %s %v", got, next)
		}
		resp, _ := h.must("GET", "/v1/responses/"+id+"/input_items?limit=0", "")
		if resp.StatusCode != 400 {
			t.Errorf("limit 0: %d", resp.StatusCode)
		}
		resp, _ = h.must("GET", "/v1/responses/resp_nope/input_items", "")
		if resp.StatusCode != 404 {
			t.Errorf("unknown id: %d", resp.StatusCode)
		}
	})

	t.Run("requests are counted as chat's are", func(t *testing.T) {
		st := h.s.Stats()
		if st.Requests["/v1/responses"] == 0 || st.Requests["/v1/responses/{id}"] == 0 || st.Requests["/v1/responses/{id}/input_items"] == 0 {
			t.Errorf("%v", st.Requests)
		}
		fams := scrape(t, h)
		m := map[string]string{"model_name": "mock-1", "engine": "0"}
		if value(t, fams, "vllm:request_success_total", map[string]string{"finished_reason": "stop"})+
			value(t, fams, "vllm:request_success_total", map[string]string{"finished_reason": "length"}) < 3 ||
			value(t, fams, "vllm:prompt_tokens_total", m) == 0 || value(t, fams, "vllm:generation_tokens_total", m) == 0 {
			t.Errorf("counters not moved")
		}
		if fams["vllm:e2e_request_latency_seconds"].Metric[0].Histogram.GetSampleCount() < 3 {
			t.Errorf("e2e histogram not moved")
		}
		if value(t, fams, "mockllm_requests_total", map[string]string{"route": "/v1/responses/{id}/input_items"}) == 0 {
			t.Errorf("route not counted")
		}
	})
}

// TestResponsesStoreBound: the store keeps ResponsesStore answers, dropping the
// oldest first; a negative bound keeps none.
func TestResponsesStoreBound(t *testing.T) {
	h := start(t, Options{MaxTokens: 4, ResponsesStore: 2})
	client := h.sdk("")
	ctx := context.Background()
	var ids []string
	for i := range 3 {
		r, err := client.Responses.New(ctx, responses.ResponseNewParams{Model: "mock-1", Input: respText(strings.Repeat("x", i+1))})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	for i, id := range ids {
		_, err := client.Responses.Get(ctx, id, responses.ResponseGetParams{})
		if kept := err == nil; kept != (i > 0) {
			t.Errorf("response %d kept %v (%v)", i, kept, err)
		}
	}

	none := start(t, Options{MaxTokens: 4, ResponsesStore: -1}).sdk("")
	r, err := none.Responses.New(ctx, responses.ResponseNewParams{Model: "mock-1", Input: respText("x")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := none.Responses.Get(ctx, r.ID, responses.ResponseGetParams{}); apiError(t, err).StatusCode != 404 {
		t.Errorf("kept with ResponsesStore -1: %v", err)
	}
}

// TestResponsesPerInstance: two servers of one seed answer one prompt alike but name
// their responses apart, and neither continues the other's.
func TestResponsesPerInstance(t *testing.T) {
	ctx := context.Background()
	a := start(t, Options{MaxTokens: 4}).sdk("")
	b := start(t, Options{MaxTokens: 4}).sdk("")
	p := responses.ResponseNewParams{Model: "mock-1", Input: respText("same prompt")}
	ra, err := a.Responses.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.Responses.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if ra.ID == rb.ID || ra.OutputText() != rb.OutputText() {
		t.Errorf("a %s %q, b %s %q", ra.ID, ra.OutputText(), rb.ID, rb.OutputText())
	}
	p.PreviousResponseID = openai.String(ra.ID)
	if _, err := b.Responses.New(ctx, p); apiError(t, err).Code != "previous_response_not_found" {
		t.Errorf("b continued a's response: %v", err)
	}
}

// TestResponsesSchedule: a stream waits TTFT before its first delta and TPOT between
// deltas, a plain answer their sum, as chat's.
func TestResponsesSchedule(t *testing.T) {
	var log sleepLog
	h := start(t, Options{TTFT: 50 * time.Millisecond, TPOT: 5 * time.Millisecond, Sleep: log.sleep})
	for _, tc := range []struct {
		body string
		want []time.Duration
	}{
		{`{"input":"x","max_output_tokens":4}`, []time.Duration{65 * time.Millisecond}},
		{`{"input":"x","max_output_tokens":3,"stream":true}`, []time.Duration{50 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond}},
	} {
		resp, b := h.must("POST", "/v1/responses", tc.body)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		if got := log.take(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: slept %v, want %v", tc.body, got, tc.want)
		}
	}
}

// TestResponsesStreamWire checks the stream's framing: event and data lines, no
// [DONE], the event's name its data's type.
func TestResponsesStreamWire(t *testing.T) {
	h := start(t, Options{MaxTokens: 4})
	resp, b := h.must("POST", "/v1/responses", `{"input":"x","stream":true,"metadata":{ "a" : "b c" }}`)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	evs := parseSSE(t, b)
	for i, ev := range evs {
		var v struct {
			Type string `json:"type"`
			Seq  *int   `json:"sequence_number"`
		}
		if err := json.Unmarshal([]byte(ev.data), &v); err != nil || v.Type != ev.name || v.Seq == nil || *v.Seq != i {
			t.Errorf("event %d: %s %s (%v)", i, ev.name, ev.data, err)
		}
	}
	if last := evs[len(evs)-1]; last.name != "response.completed" || strings.Contains(string(b), "[DONE]") || !strings.Contains(last.data, `"metadata":{"a":"b c"}`) {
		t.Errorf("ends with %s %s", last.name, last.data)
	}
}

// TestResponsesAnthropicMode: the Messages API server has no Responses API.
func TestResponsesAnthropicMode(t *testing.T) {
	h := start(t, Options{API: APIAnthropic})
	for _, c := range []struct{ method, path string }{
		{"POST", "/v1/responses"},
		{"GET", "/v1/responses/resp_x"},
		{"GET", "/v1/responses/resp_x/input_items"},
		{"POST", "/v1/responses/resp_x/cancel"},
	} {
		body := ""
		if c.method == "POST" {
			body = `{"model":"mock-1","input":"x"}`
		}
		resp, b := h.must(c.method, c.path, body, "anthropic-version", "2023-06-01")
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s: %d %s", c.method, c.path, resp.StatusCode, b)
		}
	}
}

// TestResponsesFaultOptions: the error rate and the disconnect rate apply as to chat,
// and are counted as chat's.
func TestResponsesFaultOptions(t *testing.T) {
	h := start(t, Options{MaxTokens: 8, ErrorRate: 1})
	resp, b := h.must("POST", "/v1/responses", `{"input":"x"}`)
	if resp.StatusCode != 500 || !strings.Contains(string(b), "injected error") || h.s.Stats().InjectedErrors != 1 {
		t.Errorf("error rate 1: %d %s", resp.StatusCode, b)
	}

	h = start(t, Options{MaxTokens: 8, DisconnectRate: 1})
	resp, b, err := h.do("POST", "/v1/responses", `{"input":"x","stream":true}`, "x-mock-tokens", "6")
	if err == nil || resp.StatusCode != 200 || strings.Count(string(b), "event: response.output_text.delta") != 3 || strings.Contains(string(b), "response.completed") {
		t.Errorf("disconnect rate 1: err %v, body %s", err, b)
	}
	if st := h.s.Stats(); st.CutStreams != 1 {
		t.Errorf("cut streams %d", st.CutStreams)
	}
}
