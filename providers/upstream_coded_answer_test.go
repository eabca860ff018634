package providers

import (
	"bytes"
	"errors"
	"testing"

	"github.com/valyala/fasthttp"
)

// An answer coded though the gateway asked for identity is decoded in any coding
// fasthttp knows, its name read as RFC 9110 has it (case-insensitive, x-gzip for
// gzip); the decoded size is bounded by the buffered-answer limit, so that a small
// coded body cannot expand without bound; one that does not decode, or in another
// coding, is an invalid answer.
func TestUncodedAnswer(t *testing.T) {
	plain := []byte(`{"error":{"message":"bad thing","type":"invalid_request_error"}}`)
	zeros := make([]byte, 1<<20)
	for _, tc := range []struct {
		name, enc string
		body      []byte
		max       int64
		want      []byte
		err       error
	}{
		{name: "gzip", enc: "gzip", body: fasthttp.AppendGzipBytes(nil, plain), max: 1 << 10, want: plain},
		{name: "x-gzip in capitals", enc: "X-GZIP", body: fasthttp.AppendGzipBytes(nil, plain), max: 1 << 10, want: plain},
		{name: "deflate", enc: "deflate", body: fasthttp.AppendDeflateBytes(nil, plain), max: 1 << 10, want: plain},
		{name: "br", enc: "br", body: fasthttp.AppendBrotliBytes(nil, plain), max: 1 << 10, want: plain},
		{name: "zstd", enc: "zstd", body: fasthttp.AppendZstdBytes(nil, plain), max: 1 << 10, want: plain},
		{name: "decoded size at the limit", enc: "gzip", body: fasthttp.AppendGzipBytes(nil, zeros), max: 1 << 20, want: zeros},
		{name: "decoded size over the limit", enc: "gzip", body: fasthttp.AppendGzipBytes(nil, zeros), max: 1<<20 - 1, err: ErrAnswerTooLarge},
		{name: "br over the limit", enc: "br", body: fasthttp.AppendBrotliBytes(nil, zeros), max: 64 << 10, err: ErrAnswerTooLarge},
		{name: "not what it says", enc: "gzip", body: plain, max: 1 << 10, err: ErrBadResponse},
		{name: "unknown coding", enc: "compress", body: plain, max: 1 << 10, err: ErrBadResponse},
		{name: "two codings, undone last first", enc: "gzip, br", body: fasthttp.AppendBrotliBytes(nil, fasthttp.AppendGzipBytes(nil, plain)), max: 1 << 10, want: plain},
		{name: "identity in a list", enc: "identity ,\tGZIP, identity", body: fasthttp.AppendGzipBytes(nil, plain), max: 1 << 10, want: plain},
		{name: "two codings applied the other way", enc: "gzip, br", body: fasthttp.AppendGzipBytes(nil, fasthttp.AppendBrotliBytes(nil, plain)), max: 1 << 10, err: ErrBadResponse},
		{name: "an unknown coding in a list", enc: "gzip, compress", body: fasthttp.AppendGzipBytes(nil, plain), max: 1 << 10, err: ErrBadResponse},
		{name: "inner coding over the limit", enc: "gzip, gzip", body: fasthttp.AppendGzipBytes(nil, fasthttp.AppendGzipBytes(nil, zeros)), max: 64 << 10, err: ErrAnswerTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := uncoded([]byte(tc.enc), tc.body, tc.max)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("error %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("decoded %d bytes (%v), want %d", len(got), err, len(tc.want))
			}
		})
	}
}

// An identity answer is not decoded, and the check costs nothing per request.
func TestCodedIdentity(t *testing.T) {
	for _, enc := range []string{"", "identity", "Identity", "identity, IDENTITY", " , "} {
		if coded([]byte(enc)) {
			t.Errorf("Content-Encoding %q taken as coded", enc)
		}
	}
	for _, enc := range []string{"gzip", "identity, gzip", "br ,identity"} {
		if !coded([]byte(enc)) {
			t.Errorf("Content-Encoding %q not taken as coded", enc)
		}
	}
}
