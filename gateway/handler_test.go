package gateway

import (
	"bytes"
	"testing"

	"github.com/valyala/fasthttp"
)

// The response header names the gateway sets with SetCanonical must be in
// fasthttp's canonical form, or they would go out as written.
func TestResponseHeaderNamesCanonical(t *testing.T) {
	for _, k := range [][]byte{hdrRequestID, hdrBackend, hdrVariant, hdrLimitReq, hdrRemainingReq,
		hdrResetReq, hdrLimitTok, hdrRemainingTok, hdrResetTok} {
		var h fasthttp.ResponseHeader
		h.SetBytesKV(bytes.ToLower(k), []byte("v"))
		var got []byte
		for name := range h.All() {
			got = append(got[:0], name...)
		}
		if !bytes.Equal(got, k) {
			t.Errorf("%q: canonical form is %q", k, got)
		}
	}
}
