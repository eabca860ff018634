package providers

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// msgSSE is the SSE body of a chat stream of data, as an upstream sends it.
func msgSSE(data []string) string {
	var b strings.Builder
	for _, d := range data {
		b.WriteString("data: " + d + "\n\n")
	}
	return b.String()
}

// msgBridgedOf is the Messages bridge's events for the chat stream of data, read as
// chunks, checked as the SDK reads them.
func msgBridgedOf(t *testing.T, data []string) []Event {
	t.Helper()
	s := msgStreamOf(data...)
	got := readBridged(s)
	_ = s.Close()
	if got.err != nil {
		t.Fatal(got.err)
	}
	accumulateMsg(t, got.events)
	return got.events
}

// msgBridgedSSE is the Messages bridge's events for an upstream's SSE body read from
// r, through the SSE reader.
func msgBridgedSSE(t *testing.T, r io.Reader) []Event {
	t.Helper()
	s := msgStreamOf()
	s.in = sseOnly{&sseReader{br: bufio.NewReaderSize(r, 16)}}
	got := readBridged(s)
	_ = s.Close()
	if got.err != nil {
		t.Fatal(got.err)
	}
	return got.events
}

// msgClientEvents is what a client reads in a Messages stream's events, to compare
// two streams: each event's data, the message's ID the bridge makes up (and a
// tool_use ID it makes up) masked; each input_json_delta as its block's index and
// its piece, with join set a run of one block's pieces joined into one (where a chat
// stream cut its arguments says nothing: pieces are joined).
func msgClientEvents(t *testing.T, evs []Event, join bool) []string {
	t.Helper()
	var out []string
	last, lastPiece := -1, ""
	for _, ev := range evs {
		if ev.KeepAlive || ev.Done {
			continue
		}
		var d struct {
			Index int64 `json:"index"`
			Delta struct {
				Type        string `json:"type"`
				PartialJSON string `json:"partial_json"`
			} `json:"delta"`
		}
		if string(ev.Name) == "content_block_delta" {
			if err := json.Unmarshal(ev.Data, &d); err != nil {
				t.Fatalf("event %s: %v", ev.Data, err)
			}
		}
		if d.Delta.Type != "input_json_delta" {
			last = -1
			out = append(out, msgIDs.ReplaceAllString(string(ev.Data), `"ID"`))
			continue
		}
		piece := d.Delta.PartialJSON
		if join && last == int(d.Index) {
			piece = lastPiece + piece
			out = out[:len(out)-1]
		}
		last, lastPiece = int(d.Index), piece
		out = append(out, strconv.FormatInt(d.Index, 10)+" "+strconv.Quote(piece))
	}
	return out
}

// sameEvents fails t where got, a stream's client events, are not want, those of the
// stream naming its calls first.
func sameEvents(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") == strings.Join(want, "\n") {
		return
	}
	i := 0
	for i < min(len(got), len(want)) && got[i] == want[i] {
		i++
	}
	t.Fatalf("%s: %d events, %d the same; event %d\n%s\nwant (the name first) %d events, event %d\n%s",
		what, len(got), i, i, at0(got, i), len(want), i, at0(want, i))
}

// msgWeatherArgs are the arguments of the calls the tests below cut into pieces.
var msgWeatherArgs = quoteJSON(`{"city":"Paris \"Rive Gauche\"","unit":"é"}`)

// msgLateScenarios are chat streams around a tool call, call(i) its deltas as chat
// index i; cut sets that the call's last piece is left out (the stream cut short).
var msgLateScenarios = []struct {
	name   string
	stream func(call func(i int) []string) []string
	cut    bool
}{
	{"alone", func(call func(int) []string) []string { return join(msgStart, call(0), msgEnd) }, false},
	{"cut short", func(call func(int) []string) []string {
		return join(msgStart, call(0), []string{delta(`{}`, "length"), usageChunk, "[DONE]"})
	}, true},
	{"after text", func(call func(int) []string) []string {
		return join(msgStart, []string{delta(`{"content":"Let me check."}`, "")}, call(0), msgEnd)
	}, false},
	{"before another call", func(call func(int) []string) []string { return join(msgStart, call(0), msgOther(1), msgEnd) }, false},
	{"after another call", func(call func(int) []string) []string { return join(msgStart, msgOther(0), call(1), msgEnd) }, false},
	{"text after it", func(call func(int) []string) []string {
		return join(msgStart, call(0), []string{delta(`{"content":"Done."}`, ""), delta(`{}`, "stop"), usageChunk, "[DONE]"})
	}, false},
}

var (
	msgStart = []string{delta(`{"role":"assistant","content":""}`, "")}
	msgEnd   = []string{delta(`{}`, "tool_calls"), usageChunk, "[DONE]"}
)

// msgOther is a call of index i named in its head, its arguments whole in it.
func msgOther(i int) []string {
	return lateCall(i, "call_"+strconv.Itoa(i), "get_time", []string{quoteJSON(`{"tz":"CET"}`)}, -1, false)
}

// A chat server that sends a tool call's name after its id or its first arguments
// (the head naming none, or an empty name; the name alone in a later delta, or with
// a piece) gets the events it would get naming the call in its head: the tool_use
// block begins once the name comes, with the name, the pieces held until then in one
// input_json_delta, the rest streamed as they come. Whatever the size of the pieces
// and wherever the name comes, for a call alone, cut short, after text, before and
// after another call, and with text after it. Before, the block began at the call's
// first delta with "name": "", and the name that came later was dropped.
func TestMessagesBridgeLateNamedCall(t *testing.T) {
	for _, sc := range msgLateScenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			for _, size := range []int{1, 2, 5, 64} {
				pieces := splitArguments(msgWeatherArgs, size)
				if sc.cut {
					pieces = pieces[:len(pieces)-1]
				}
				call := func(at int, with bool) func(int) []string {
					return func(i int) []string {
						return lateCall(i, "call_"+strconv.Itoa(i), "get_weather", pieces, at, with)
					}
				}
				named := msgBridgedOf(t, sc.stream(call(-1, false)))
				want, wantJoined := msgClientEvents(t, named, false), msgClientEvents(t, named, true)
				for at := 0; at <= len(pieces); at++ {
					for _, with := range []bool{false, true} {
						if with && at == 0 {
							continue
						}
						evs := msgBridgedOf(t, sc.stream(call(at, with)))
						// The name after one piece at most: the piece held is one
						// delta, as when named first; after more, they go as one.
						w, joined := want, false
						if at > 1 {
							w, joined = wantJoined, true
						}
						sameEvents(t, "pieces of "+strconv.Itoa(size)+" bytes, name after "+strconv.Itoa(at)+
							" (with a piece "+strconv.FormatBool(with)+")", msgClientEvents(t, evs, joined), w)
					}
				}
			}
		})
	}
}

// msgInterleaved is a chat stream of two parallel calls whose deltas interleave (0, 1,
// 0, 1, as some servers send them), late0 and late1 whether each call's name comes
// after its head (after its first piece, in a delta of its own).
func msgInterleaved(late0, late1 bool) []string {
	head := func(i int, id, name, args string, late bool) string {
		if late {
			return delta(`{"tool_calls":[{"index":`+strconv.Itoa(i)+`,"id":"`+id+`","type":"function","function":{"arguments":`+args+`}}]}`, "")
		}
		return delta(`{"tool_calls":[{"index":`+strconv.Itoa(i)+`,"id":"`+id+`","type":"function","function":{"name":"`+name+`","arguments":`+args+`}}]}`, "")
	}
	name := func(i int, name string) string {
		return delta(`{"tool_calls":[{"index":`+strconv.Itoa(i)+`,"function":{"name":"`+name+`"}}]}`, "")
	}
	data := join(msgStart, []string{head(0, "call_0", "get_weather", `""`, late0), head(1, "call_1", "get_time", quoteJSON(`{"tz":`), late1),
		callDelta(0, "", "", `{"city":`)})
	if late1 {
		data = append(data, name(1, "get_time"))
	}
	if late0 {
		data = append(data, name(0, "get_weather"))
	}
	return join(data, []string{callDelta(1, "", "", `"CET"}`), callDelta(0, "", "", `"Paris"}`)}, msgEnd)
}

// msgStaggered is a chat stream of three parallel calls, each beginning after the
// arguments of the one before it ended (0, 1, 0, 2, 1, 2), those of late named after
// their first piece.
func msgStaggered(late [3]bool) []string {
	names := [3]string{"get_weather", "get_time", "get_news"}
	head := func(i int, args string) []string {
		id := `"id":"call_` + strconv.Itoa(i) + `","type":"function"`
		if !late[i] {
			return []string{delta(`{"tool_calls":[{"index":`+strconv.Itoa(i)+`,`+id+`,"function":{"name":"`+names[i]+`","arguments":`+quoteJSON(args)+`}}]}`, "")}
		}
		return []string{delta(`{"tool_calls":[{"index":`+strconv.Itoa(i)+`,`+id+`,"function":{"name":"","arguments":`+quoteJSON(args)+`}}]}`, ""),
			delta(`{"tool_calls":[{"index":`+strconv.Itoa(i)+`,"function":{"name":"`+names[i]+`"}}]}`, "")}
	}
	return join(msgStart, head(0, `{"city":`), head(1, `{"tz":`), []string{callDelta(0, "", "", `"Paris"}`)},
		head(2, `{"topic":`), []string{callDelta(1, "", "", `"CET"}`), callDelta(2, "", "", `"AI"}`)}, msgEnd)
}

// Parallel calls whose deltas interleave, one or both named late: the call held
// behind the open one takes its name when it comes and is written whole with it when
// its turn comes; the open one's block begins with its name, its piece held in one
// delta. The events are those of the same stream naming both calls first; as are
// those of three calls begun one after the other's arguments ended (0, 1, 0, 2, 1, 2).
func TestMessagesBridgeLateNamedCallInterleaved(t *testing.T) {
	want := msgClientEvents(t, msgBridgedOf(t, msgInterleaved(false, false)), false)
	for _, late := range [][2]bool{{true, false}, {false, true}, {true, true}} {
		got := msgClientEvents(t, msgBridgedOf(t, msgInterleaved(late[0], late[1])), false)
		sameEvents(t, "call 0 named late "+strconv.FormatBool(late[0])+", call 1 "+strconv.FormatBool(late[1]), got, want)
	}
	want = msgClientEvents(t, msgBridgedOf(t, msgStaggered([3]bool{})), false)
	for k := 1; k < 8; k++ {
		late := [3]bool{k&1 != 0, k&2 != 0, k&4 != 0}
		got := msgClientEvents(t, msgBridgedOf(t, msgStaggered(late)), false)
		sameEvents(t, "staggered, named late "+strconv.Itoa(k), got, want)
	}
}

// The same streams read from their SSE bodies however the bytes arrive (cut at every
// byte, one byte a read) give the events of the stream naming its calls first.
func TestMessagesBridgeLateNamedCallSplit(t *testing.T) {
	pieces := splitArguments(msgWeatherArgs, 7)
	call := func(at int, with bool) func(int) []string {
		return func(i int) []string { return lateCall(i, "call_"+strconv.Itoa(i), "get_weather", pieces, at, with) }
	}
	type stream struct {
		name        string
		named, late []string
		joined      bool
	}
	var streams []stream
	for _, sc := range msgLateScenarios {
		if sc.cut {
			continue
		}
		named := sc.stream(call(-1, false))
		streams = append(streams,
			stream{sc.name + ", name in the second delta", named, sc.stream(call(0, false)), false},
			stream{sc.name + ", name with the second piece", named, sc.stream(call(1, true)), false},
			stream{sc.name + ", name after the arguments", named, sc.stream(call(len(pieces), false)), true})
	}
	streams = append(streams, stream{"interleaved", msgInterleaved(false, false), msgInterleaved(true, true), false})
	for _, st := range streams {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			want := msgClientEvents(t, msgBridgedOf(t, st.named), st.joined)
			body := msgSSE(st.late)
			check := func(how string, r io.Reader) {
				sameEvents(t, how, msgClientEvents(t, msgBridgedSSE(t, r), st.joined), want)
			}
			check("whole", strings.NewReader(body))
			check("one byte a read", iotest.OneByteReader(strings.NewReader(body)))
			for i := 1; i < len(body); i++ {
				check("cut at "+strconv.Itoa(i), io.MultiReader(strings.NewReader(body[:i]), strings.NewReader(body[i:])))
			}
		})
	}
}

// msgNameless is the head of call i (id id) naming no tool, its arguments args (the
// inside of a JSON string).
func msgNameless(i int, id, args string) string {
	return delta(`{"tool_calls":[{"index":`+strconv.Itoa(i)+`,"id":"`+id+`","type":"function","function":{"arguments":"`+args+`"}}]}`, "")
}

// msgPiece is a delta of call i's arguments, args (the inside of a JSON string).
func msgPiece(i int, args string) string {
	return delta(`{"tool_calls":[{"index":`+strconv.Itoa(i)+`,"function":{"arguments":"`+args+`"}}]}`, "")
}

// msgNameOf is a delta naming call i, and nothing else.
func msgNameOf(i int, name string) string {
	return delta(`{"tool_calls":[{"index":`+strconv.Itoa(i)+`,"function":{"name":"`+name+`"}}]}`, "")
}

// A call that never gets a name ends as it always did: a tool_use block with an
// empty name and its arguments, written when it ends (another call begins after its
// arguments are whole, text follows, the stream ends), the pieces held till then in
// one delta; calls after it wait for it. A call is done once its arguments are whole
// as the next call begins, or text follows it: a name that comes after that is
// dropped (its block went out without one) and the stream goes on, as a delta
// without arguments for any call done always was; a piece of arguments after it
// still ends the stream as a bad answer.
func TestMessagesBridgeUnnamedCall(t *testing.T) {
	for _, tc := range []struct {
		name   string
		chunks []string
		want   string // the blocks: text, or name=input
		events string // the events' names, when given
	}{
		{"alone", []string{msgNameless(0, "call_0", `{\"a\":`), callDelta(0, "", "", `1}`), delta(`{}`, "tool_calls")},
			`={"a":1}`, "message_start content_block_start content_block_delta content_block_stop message_delta message_stop"},
		{"another call after it", []string{msgNameless(0, "call_0", `{}`), callDelta(1, "call_1", "g", `{"x":`), callDelta(1, "", "", `1}`),
			delta(`{}`, "tool_calls")}, `={} g={"x":1}`,
			"message_start content_block_start content_block_delta content_block_stop content_block_start content_block_delta content_block_delta content_block_stop message_delta message_stop"},
		{"text after it", []string{msgNameless(0, "call_0", `{\"a\":`), callDelta(0, "", "", `1}`), delta(`{"content":"ok"}`, ""), delta(`{}`, "stop")},
			`={"a":1} text:ok`, ""},
		{"interleaved with a named call", []string{msgNameless(0, "call_0", `{\"a\":`), callDelta(1, "call_1", "g", `{`), callDelta(0, "", "", `2}`),
			callDelta(1, "", "", `}`), delta(`{}`, "tool_calls")}, `={"a":2} g={}`, ""},
		{"held behind a named call", []string{callDelta(0, "call_0", "f", `{"a":`), msgNameless(1, "call_1", `{`), callDelta(0, "", "", `1}`),
			callDelta(1, "", "", `}`), delta(`{}`, "tool_calls")}, `f={"a":1} ={}`, ""},
		{"held, named calls behind it", []string{callDelta(0, "call_0", "f", `{`), msgNameless(1, "call_1", `{}`), callDelta(2, "call_2", "h", `{}`),
			callDelta(0, "", "", `}`), delta(`{}`, "tool_calls")}, `f={} ={} h={}`, ""},
		{"named after the next call began", []string{msgNameless(0, "call_0", `{}`), callDelta(1, "call_1", "g", `{}`), msgNameOf(0, "f"),
			delta(`{}`, "tool_calls")}, `={} g={}`, ""},
		{"named after text", []string{msgNameless(0, "call_0", `{}`), delta(`{"content":"ok"}`, ""), msgNameOf(0, "f"), delta(`{}`, "stop")},
			`={} text:ok`, ""},
		{"held, named after the next call began", []string{callDelta(0, "call_0", "f", `{`), msgNameless(1, "call_1", `{}`), callDelta(0, "", "", `}`),
			callDelta(2, "call_2", "h", `{}`), msgNameOf(1, "g"), delta(`{}`, "tool_calls")}, `f={} ={} h={}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := msgStreamOf(join(msgStart, tc.chunks, []string{usageChunk, "[DONE]"})...)
			got := readBridged(s)
			_ = s.Close()
			if got.err != nil {
				t.Fatal(got.err)
			}
			m, names := accumulateMsg(t, got.events)
			var have []string
			for _, b := range m.Content {
				if b.Type == "text" {
					have = append(have, "text:"+b.Text)
				} else {
					have = append(have, b.Name+"="+string(b.Input))
				}
			}
			if strings.Join(have, " ") != tc.want {
				t.Errorf("blocks %q; want %s", have, tc.want)
			}
			if tc.events != "" && names != tc.events {
				t.Errorf("events %s; want %s", names, tc.events)
			}
		})
	}
	t.Run("arguments after it was done", func(t *testing.T) {
		s := msgStreamOf(msgNameless(0, "call_0", `{}`), callDelta(1, "call_1", "g", `{}`), callDelta(0, "", "f", `{}`), "[DONE]")
		got := readBridged(s)
		_ = s.Close()
		if !errors.Is(got.err, errToolReopened) {
			t.Errorf("error %v; want %v", got.err, errToolReopened)
		}
	})
}

// Calls held for their names count against maxOpenCalls: 128 are served (each a
// tool_use block without a name, in order), the 129th ends the stream as a bad
// answer; calls done one after the other, or interleaved and held.
func TestMessagesBridgeLateNamedCallsBounded(t *testing.T) {
	for _, interleaved := range []bool{false, true} {
		stream := func(n int) []string {
			var c []string
			args := `{}`
			if interleaved {
				args = `{`
			}
			for i := range n {
				c = append(c, msgNameless(i, "call_"+strconv.Itoa(i), args))
			}
			for i := range n {
				if interleaved {
					c = append(c, msgPiece(i, `}`))
				}
			}
			return append(c, delta(`{}`, "tool_calls"), usageChunk, "[DONE]")
		}
		for _, tc := range []struct {
			n   int
			err error
		}{{128, nil}, {129, errTooManyCalls}} {
			s := msgStreamOf(stream(tc.n)...)
			got := readBridged(s)
			_ = s.Close()
			if got.err != tc.err || tc.err != nil && !errors.Is(got.err, ErrBadResponse) {
				t.Fatalf("%d calls (interleaved %v): error %v; want %v", tc.n, interleaved, got.err, tc.err)
			}
			if tc.err != nil {
				continue
			}
			m, _ := accumulateMsg(t, got.events)
			if len(m.Content) != tc.n {
				t.Fatalf("%d calls (interleaved %v): %d blocks", tc.n, interleaved, len(m.Content))
			}
			for i, b := range m.Content {
				if b.Type != "tool_use" || b.Name != "" || b.ID != "call_"+strconv.Itoa(i) || string(b.Input) != `{}` {
					t.Fatalf("%d calls (interleaved %v): block %d %+v", tc.n, interleaved, i, b)
				}
			}
		}
	}
}

// benchMsgsLateDeltas is a chat stream of 16 text deltas, then two parallel calls
// named late whose deltas interleave: the first named after two pieces, in 8 pieces
// in all; the second, held behind it, named after its first piece; the usage chunk.
func benchMsgsLateDeltas() *chunkEvents {
	var data []string
	for range 16 {
		data = append(data, delta(`{"content":"word "}`, ""))
	}
	data = append(data, msgNameless(0, "call_1", `{\"a\":1,`), msgNameless(1, "call_2", `{\"b\":`), msgPiece(0, `\"c\":2,`),
		msgNameOf(0, "get_weather"), msgNameOf(1, "get_time"), msgPiece(1, `2}`))
	for range 5 {
		data = append(data, msgPiece(0, `\"d\":3,`))
	}
	data = append(data, msgPiece(0, `\"e\":4}`))
	return newChunkEvents(append(data, delta(`{}`, "tool_calls"), usageChunk, "[DONE]")...)
}

func BenchmarkMessagesBridgeStreamLateNamed(b *testing.B) {
	b.ReportAllocs()
	in := benchMsgsLateDeltas()
	for b.Loop() {
		runMsgStream(b, in, false)
	}
}
