package providers

import (
	"strings"
	"testing"
)

// A call held behind another (interleaved parallel calls) keeps its arguments until
// its block is written; a pooled stream does not keep a long call's buffer, nor its
// id's or name's, past the stream, as it keeps none of the open call's (openArgs).
// Small ones stay for the next stream.
func TestMessagesBridgeHeldBuffersNotPooledLarge(t *testing.T) {
	long := strings.Repeat("x", maxPooledBuffer+1)
	s := msgStreamOf(join(msgStart, []string{
		callDelta(0, "call_0", "f", `{"a":`),
		msgNameless(1, "call_"+long, `{\"p\":\"`+long+`\"}`),
		msgNameOf(1, "g_"+long),
		msgNameless(2, "call_2", `{}`),
		msgNameOf(2, "h"),
		callDelta(0, "", "", `1}`),
		delta(`{}`, "tool_calls"), usageChunk, "[DONE]",
	})...)
	got := readBridged(s)
	if got.err != nil {
		t.Fatal(got.err)
	}
	m, _ := accumulateMsg(t, got.events)
	if len(m.Content) != 3 || len(m.Content[1].Input) < len(long) || m.Content[2].Name != "h" {
		t.Fatalf("blocks %d; want f, g_…, h with their inputs", len(m.Content))
	}
	// What Close does before the stream goes back to the pool (this one is not put
	// back: the pool is not what is probed).
	_ = s.closeInner()
	s.reset()
	held := s.held[:cap(s.held)]
	if len(held) < 2 {
		t.Fatalf("the pooled stream keeps state for %d held calls, want 2", len(held))
	}
	for i, h := range held {
		for what, b := range map[string][]byte{"id": h.id, "name": h.name, "arguments": h.args} {
			if cap(b) > maxPooledBuffer {
				t.Errorf("held call %d: a %d-byte %s buffer kept for the pool", i, cap(b), what)
			}
		}
	}
	if cap(held[0].args)+cap(held[1].args) == 0 {
		t.Error("the small held call's arguments buffer is not kept")
	}
}
