package providers

import (
	"errors"
	"strconv"

	"github.com/valyala/fasthttp"
)

// ErrHeaderTooLarge is an upstream answer whose header, or a chunked body's trailer,
// is over its backend's max_response_header_bytes: the upstream's invalid answer
// (ErrBadResponse), not retried, since another attempt has the upstream do the work
// for the same header. Like an answer over max_response_bytes it says nothing against
// the target: the bound is the gateway's own, and every target behind the same load
// balancer sends the same header.
var ErrHeaderTooLarge = errors.New("upstream answer header over the backend's max_response_header_bytes")

// headerOverError is an answer whose header (or trailer) did not fit a read buffer of
// size bytes, the backend's max_response_header_bytes. It names the key and its
// value, which the operator can raise; fasthttp's own error (ErrSmallBuffer) names its
// ReadBufferSize, which no config key sets. Neither quotes the header: a Set-Cookie is
// a credential.
type headerOverError struct {
	size    int
	trailer bool
}

func (e *headerOverError) Error() string {
	what := "header"
	if e.trailer {
		what = "trailer"
	}
	return "upstream answer " + what + " over the backend's max_response_header_bytes (" + strconv.Itoa(e.size) + " bytes)"
}

func (e *headerOverError) Is(target error) bool { return target == ErrHeaderTooLarge }

// headerFit is err, from the read of an answer's header (a trailer's, when trailer)
// into a buffer of size bytes: fasthttp's ErrSmallBuffer, a header that does not fit,
// becomes ErrBadResponse with a headerOverError; any other error stays as it is.
func headerFit(err error, size int, trailer bool) error {
	if _, ok := errors.AsType[*fasthttp.ErrSmallBuffer](err); !ok {
		return err
	}
	return errors.Join(ErrBadResponse, &headerOverError{size: size, trailer: trailer})
}
