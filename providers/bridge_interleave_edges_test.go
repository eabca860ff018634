package providers

import (
	"strconv"
	"strings"
	"testing"
)

// A server streaming parallel tool calls whose heads come in another order than their
// indices (1 before 0; or 0, 2, then 1): each call is its own function_call item, in
// the order the calls first appear; a call that never began is not one resumed.
func TestBridgeInterleaveCallFirstAppearingBelowHighestIndex(t *testing.T) {
	t.Parallel()
	const req = `{"model":"chat","input":"Weather in Paris and Rome?","tools":[{"type":"function","name":"get_weather","parameters":{}}]}`
	end := []string{delta(`{}`, "tool_calls"), usageChunk, "[DONE]"}
	for _, tc := range []struct {
		name   string
		chunks []string
		want   []string // call_id=arguments, in output_index order
	}{
		{"index 1 first, then 0", append([]string{
			callChunk(1, "call_b", "get_weather", ""), callChunk(0, "call_a", "get_weather", ""),
			callChunk(1, "", "", `{\"city\":\"Rome\"}`), callChunk(0, "", "", `{\"city\":\"Paris\"}`)}, end...),
			[]string{`call_b={"city":"Rome"}`, `call_a={"city":"Paris"}`}},
		{"indices 0, 2, then 1", append([]string{
			callChunk(0, "call_a", "get_weather", ""), callChunk(2, "call_c", "get_weather", ""), callChunk(1, "call_b", "get_weather", ""),
			callChunk(0, "", "", `{}`), callChunk(2, "", "", `{}`), callChunk(1, "", "", `{}`)}, end...),
			[]string{`call_a={}`, `call_c={}`, `call_b={}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := bridgeStreamOf(req, tc.chunks...)
			defer s.Close()
			got := readBridged(s)
			if got.err != nil {
				t.Fatalf("got the stream ending in error %q, want %d function_call items %v", strings.ReplaceAll(got.err.Error(), "\n", ": "), len(tc.want), tc.want)
			}
			evs := checkEvents(t, got.events)
			checkItems(t, evs)
			var have []string
			for _, o := range evs[len(evs)-1].Response.Output {
				have = append(have, o.CallID+"="+o.Arguments.OfString)
			}
			if strings.Join(have, " ") != strings.Join(tc.want, " ") {
				t.Errorf("got output %v, want %v", have, tc.want)
			}
		})
	}
}

// max_output_tokens cuts an interleaved answer in the middle of call 0's arguments,
// after call 1's were whole: call 0, the one cut, is incomplete and call 1 completed,
// so that a client running completed calls never runs a broken one.
func TestBridgeInterleaveLengthCutMarksTheCallCut(t *testing.T) {
	t.Parallel()
	const req = `{"model":"chat","input":"Weather in Paris and Rome?","max_output_tokens":20,"tools":[{"type":"function","name":"get_weather","parameters":{}}]}`
	s := bridgeStreamOf(req, callChunk(0, "call_a", "get_weather", ""), callChunk(1, "call_b", "get_weather", ""),
		callChunk(1, "", "", `{\"city\":\"Rome\"}`), callChunk(0, "", "", `{\"city\":\"Pa`), delta(`{}`, "length"), usageChunk, "[DONE]")
	defer s.Close()
	got := readBridged(s)
	if got.err != nil {
		t.Fatal(got.err)
	}
	evs := checkEvents(t, got.events)
	final := evs[len(evs)-1].Response
	if final.Status != "incomplete" || len(final.Output) != 2 {
		t.Fatalf("got %s, want an incomplete response with two calls", final.RawJSON())
	}
	for _, o := range final.Output {
		if o.CallID == "call_a" && o.Status == "completed" {
			t.Errorf("got call_a (arguments %q, cut by max tokens) with status %q, want \"incomplete\"", o.Arguments.OfString, o.Status)
		}
	}
	for i, e := range evs {
		if e.Type == "response.output_item.done" && e.Item.CallID == "call_a" && e.Item.Status == "completed" {
			t.Errorf("got event %d output_item.done of call_a with status completed (arguments %q), want \"incomplete\"", i, e.Item.Arguments.OfString)
		}
	}
}

// A pooled stream keeps the state of up to maxPooledCalls calls (an agent fanning out
// to 16 tools) when it ends, though append grew the slice past it (to 18 for 10
// calls): the next such stream allocates nothing for them.
func TestBridgeInterleavePooledStateKept(t *testing.T) {
	t.Parallel()
	const req = `{"model":"chat","input":"x"}`
	for _, n := range []int{9, 10, 16} {
		var chunks []string
		for i := range n {
			chunks = append(chunks, callChunk(i, "call_"+strconv.Itoa(i), "get_weather", ""))
		}
		for i := range n {
			chunks = append(chunks, callChunk(i, "", "", `{}`))
		}
		chunks = append(chunks, delta(`{}`, "tool_calls"), usageChunk, "[DONE]")
		s := bridgeStreamOf(req, chunks...)
		if got := readBridged(s); got.err != nil {
			t.Fatal(got.err)
		}
		// What Close does before the stream goes back to the pool (this one is not
		// put back: the pool is not what is probed).
		s.reset()
		if cap(s.calls) < n {
			t.Errorf("%d calls: got the pooled stream keeping state for %d calls, want %d kept (maxPooledCalls %d)", n, cap(s.calls), n, maxPooledCalls)
		}
	}
}
