package tracing

import (
	"bytes"
	"context"
	"encoding/hex"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Header is the part of an HTTP header that propagation needs. fasthttp's
// *RequestHeader and *ResponseHeader have it.
type Header interface {
	Peek(key string) []byte
	Set(key, value string)
}

const (
	traceparentHeader = "traceparent"
	tracestateHeader  = "tracestate"
)

// multiHeader is a Header that can hold a field several times, as fasthttp's do:
// Extract reads every traceparent and tracestate field, Inject deletes them all.
type multiHeader interface {
	PeekAll(key string) [][]byte
	Del(key string)
}

// HeaderCarrier adapts a Header to propagation.TextMapCarrier, with no map
// in between.
type HeaderCarrier struct{ H Header }

var _ propagation.TextMapCarrier = HeaderCarrier{}

// Get returns the header's value, or "" when it is absent.
func (c HeaderCarrier) Get(key string) string {
	b := c.H.Peek(key)
	if len(b) == 0 {
		return ""
	}
	return string(b)
}

// Set sets the header.
func (c HeaderCarrier) Set(key, value string) { c.H.Set(key, value) }

// Keys returns the trace context headers present; a Header cannot list
// the others, and the W3C propagator never asks.
func (c HeaderCarrier) Keys() []string {
	var keys []string
	for _, k := range [...]string{traceparentHeader, tracestateHeader} {
		if len(c.H.Peek(k)) > 0 {
			keys = append(keys, k)
		}
	}
	return keys
}

// Extract returns ctx with the client's W3C trace context (traceparent,
// tracestate) as the remote parent of the spans started from it. Without a
// valid traceparent it returns ctx as is. With tracing off the gateway reads
// only ClientTraceID, for the trace ID of its access log; the upstream then
// gets the client's trace headers as the client sent them, not through Inject.
//
// It parses traceparent exactly as propagation.TraceContext does (a fuzz
// test holds them equal) but from the header's bytes, without the string
// copies and carrier the propagator needs.
func Extract(ctx context.Context, h Header) context.Context {
	scc, ok := clientParent(h)
	if !ok {
		return ctx
	}
	var ts string
	if mh, multi := h.(multiHeader); multi {
		ts = joinFields(mh.PeekAll(tracestateHeader))
	} else {
		ts = string(h.Peek(tracestateHeader))
	}
	if ts != "" {
		// An invalid tracestate must not invalidate traceparent (W3C).
		scc.TraceState, _ = trace.ParseTraceState(dropBlankMembers(ts))
	}
	return trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(scc))
}

// ClientTraceID is the trace ID of the client's traceparent in h, as Extract takes it
// (one valid traceparent), without the context Extract builds nor the tracestate: with
// tracing off the gateway takes no part in the trace, and the access log needs only
// the ID.
func ClientTraceID(h Header) (trace.TraceID, bool) {
	scc, ok := clientParent(h)
	return scc.TraceID, ok
}

// clientParent parses the one traceparent of h: two name two parents, and neither is
// taken (W3C); one with an all-zero trace or span ID is invalid.
func clientParent(h Header) (trace.SpanContextConfig, bool) {
	tp := h.Peek(traceparentHeader)
	if len(tp) == 0 {
		return trace.SpanContextConfig{}, false
	}
	if mh, multi := h.(multiHeader); multi && len(mh.PeekAll(traceparentHeader)) > 1 {
		return trace.SpanContextConfig{}, false
	}
	scc, ok := parseTraceparent(tp)
	if !ok || !scc.TraceID.IsValid() || !scc.SpanID.IsValid() {
		return trace.SpanContextConfig{}, false
	}
	return scc, true
}

// joinFields joins header fields into one comma-separated list, as a
// tracestate sent in several fields is one list, in order (W3C, RFC 9110
// 5.3), in one allocation.
func joinFields(fields [][]byte) string {
	switch len(fields) {
	case 0:
		return ""
	case 1:
		return string(fields[0])
	}
	n := len(fields) - 1
	for _, f := range fields {
		n += len(f)
	}
	var b strings.Builder
	b.Grow(n)
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(f)
	}
	return b.String()
}

// dropBlankMembers removes the members of the tracestate list ts that are empty or
// only spaces and tabs: W3C Trace Context allows them ("some vendors automatically
// inject whitespace after a comma separator"), but trace.ParseTraceState skips only
// empty ones and rejects the whole list for one of whitespace. A list without such a
// member is returned as it is, without a copy.
func dropBlankMembers(ts string) string {
	blank := false
	for rest := ts; rest != "" && !blank; {
		var m string
		m, rest, _ = strings.Cut(rest, ",")
		blank = m != "" && isOWS(m)
	}
	if !blank {
		return ts
	}
	var b strings.Builder
	b.Grow(len(ts))
	for rest := ts; rest != ""; {
		var m string
		m, rest, _ = strings.Cut(rest, ",")
		if isOWS(m) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(m)
	}
	return b.String()
}

// isOWS reports whether s is only spaces and tabs (OWS, RFC 9110 5.6.3), or empty.
func isOWS(s string) bool {
	return strings.Trim(s, " \t") == ""
}

// maxTraceparentVersion is the highest version the W3C format allows; ff is
// invalid.
const maxTraceparentVersion = 254

// parseTraceparent parses version-traceid-spanid-flags. Version 00 allows
// nothing after the flags and only the sampled and random flag bits; later
// versions may append fields.
func parseTraceparent(h []byte) (trace.SpanContextConfig, bool) {
	var scc trace.SpanContextConfig
	var ver, flags [1]byte
	if !cutHex(ver[:], &h, 2) || int(ver[0]) > maxTraceparentVersion ||
		!cutHex(scc.TraceID[:], &h, 32) || !cutHex(scc.SpanID[:], &h, 16) || !cutHex(flags[:], &h, 2) {
		return scc, false
	}
	if ver[0] == 0 && (len(h) != 0 || flags[0] > 3) {
		return scc, false
	}
	scc.TraceFlags = trace.TraceFlags(flags[0]) & (trace.FlagsSampled | trace.FlagsRandom)
	scc.Remote = true
	return scc, true
}

// cutHex decodes the next dash-separated field of *h, which must be n
// lower-case hex digits, into dst.
func cutHex(dst []byte, h *[]byte, n int) bool {
	part, rest, _ := bytes.Cut(*h, []byte{'-'})
	*h = rest
	if len(part) != n {
		return false
	}
	for i := 0; i < n; i += 2 {
		hi, ok1 := unhex(part[i])
		lo, ok2 := unhex(part[i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i/2] = hi<<4 | lo
	}
	return true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

const traceparentLen = 55

var traceparentBufs = sync.Pool{New: func() any { return new([traceparentLen]byte) }}

// bytesSetter is fasthttp's way to set a header from bytes without a string
// copy; Inject uses it when the Header has it.
type bytesSetter interface {
	SetBytesV(key string, value []byte)
}

// Inject sets traceparent (and tracestate when there is one) on the upstream
// request from the span in ctx, in place of every traceparent and tracestate field
// the client sent: a second traceparent of the client's, or the tracestate of a
// trace the gateway did not continue, must not reach the upstream beside the
// gateway's. Nothing is set when ctx carries no valid span context; it reports
// whether it set the fields. The format is
// propagation.TraceContext's. The gateway injects with tracing on only: with it
// off the gateway is no participant in the trace, and the client's fields pass
// as sent.
func Inject(ctx context.Context, h Header) bool {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return false
	}
	if mh, ok := h.(multiHeader); ok {
		mh.Del(traceparentHeader)
		mh.Del(tracestateHeader)
	}
	if bs, ok := h.(bytesSetter); ok {
		// The buffer escapes through the interface call: pool it.
		buf := traceparentBufs.Get().(*[traceparentLen]byte)
		bs.SetBytesV(traceparentHeader, AppendTraceparent(buf[:0], sc))
		traceparentBufs.Put(buf)
	} else {
		var buf [traceparentLen]byte
		h.Set(traceparentHeader, string(AppendTraceparent(buf[:0], sc)))
	}
	if ts := sc.TraceState(); ts.Len() > 0 {
		h.Set(tracestateHeader, ts.String())
	}
	return true
}

// AppendTraceparent appends sc as a version 00 traceparent value to dst.
func AppendTraceparent(dst []byte, sc trace.SpanContext) []byte {
	tid, sid := sc.TraceID(), sc.SpanID()
	flags := sc.TraceFlags() & (trace.FlagsSampled | trace.FlagsRandom)
	dst = append(dst, "00-"...)
	dst = hex.AppendEncode(dst, tid[:])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, sid[:])
	dst = append(dst, '-')
	return hex.AppendEncode(dst, []byte{byte(flags)})
}

// AppendTraceID appends the hex trace ID of the span in ctx to dst, for the
// access log; it appends nothing when there is none.
func AppendTraceID(ctx context.Context, dst []byte) []byte {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return dst
	}
	id := sc.TraceID()
	return hex.AppendEncode(dst, id[:])
}
