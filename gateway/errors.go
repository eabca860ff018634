package gateway

import (
	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/tollgate/tollgate/providers"
	"github.com/valyala/fasthttp"
)

// apiError is an error answer in OpenAI's shape.
type apiError struct {
	status  int
	typ     string
	code    string
	param   string
	message string
}

// The errors the gateway itself answers with. Messages never hold keys or prompts.
var (
	errMalformed   = apiError{400, "invalid_request_error", "invalid_json", "", "We could not parse the JSON body of your request. The OpenAI API expects a JSON payload."}
	errNotObject   = apiError{400, "invalid_request_error", "invalid_json", "", "The request body must be a JSON object."}
	errNoModel     = apiError{400, "invalid_request_error", "missing_model", "model", "You must provide a model parameter."}
	errModelType   = apiError{400, "invalid_request_error", "invalid_type", "model", "The model parameter must be a string."}
	errStreamType  = apiError{400, "invalid_request_error", "invalid_type", "stream", "The stream parameter must be a boolean."}
	errOptionsType = apiError{400, "invalid_request_error", "invalid_type", "stream_options", "The stream_options parameter must be an object."}
	errUsageType   = apiError{400, "invalid_request_error", "invalid_type", "stream_options.include_usage", "The stream_options.include_usage parameter must be a boolean."}
	errTooLarge    = apiError{413, "invalid_request_error", "request_too_large", "", "The request body is larger than this gateway accepts."}
	errNoKey       = apiError{401, "authentication_error", "missing_api_key", "", "You didn't provide an API key. Send it in the Authorization header as Bearer YOUR_KEY."}
	errBadKey      = apiError{401, "authentication_error", "invalid_api_key", "", "Incorrect API key provided."}
	// errNotBearer is errBadKey for an Authorization header of another scheme (Basic):
	// its challenge carries no error code (RFC 6750 3.1).
	errNotBearer = errBadKey
	// errBadHeaderKey is errBadKey for a key sent in api-key or x-api-key: no bearer
	// token was sent, so its challenge carries no error code either.
	errBadHeaderKey = errBadKey
	errNotFound     = apiError{404, "invalid_request_error", "not_found", "", "Unknown request URL. Please check the URL and method."}
	errMethod       = apiError{405, "invalid_request_error", "method_not_allowed", "", "This URL does not accept that HTTP method."}
	errUnreadable   = apiError{400, "invalid_request_error", "bad_request", "", "The HTTP request could not be read."}
	// fasthttp reads the request line and headers into server.go's ReadBufferSize.
	errHeaderTooLarge = apiError{431, "invalid_request_error", "request_header_too_large", "", "The request's headers are over 8 KiB."}
	errReadTimeout    = apiError{408, "invalid_request_error", "request_timeout", "", "The request was not read in full within the server's read_timeout."}
	errUpstreamDown   = apiError{502, "server_error", "upstream_unreachable", "", "The upstream model server could not be reached."}
	errUpstreamBad    = apiError{502, "server_error", "upstream_bad_response", "", "The upstream model server sent an invalid response."}
	errUpstreamSlow   = apiError{504, "server_error", "upstream_timeout", "", "The upstream model server did not answer in time."}
	errInternal       = apiError{500, "server_error", "internal_error", "", "The gateway failed to handle the request."}
	errShuttingDown   = apiError{503, "server_error", "shutting_down", "", "The gateway is shutting down; retry on another replica."}
	errOverloaded     = apiError{503, "server_error", "overloaded", "", "The gateway holds as many request bodies and upstream answers in memory as it may at once; retry shortly."}
	errUpstreamBusy   = apiError{503, "server_error", "upstream_overloaded", "", "Every upstream replica is at its concurrency limit; retry shortly."}
	errNoTarget       = apiError{503, "server_error", "no_healthy_upstream", "", "No upstream replica is in service for this model."}
	errUnsupportedOp  = apiError{400, "invalid_request_error", "unsupported_operation", "model", "This backend does not support the operation."}

	// errUpstreamTooLarge is an answer over the backend's max_response_bytes: a
	// retry has the upstream generate about as large an answer again (an embeddings
	// batch exactly as large), so the SDKs are told not to (writeError).
	errUpstreamTooLarge = apiError{502, "server_error", "upstream_bad_response", "", "The upstream model server's answer is larger than this gateway passes on."}

	// errUpstreamHeaderTooLarge is an answer whose header is over the backend's
	// max_response_header_bytes: a retry gets the same header (a load balancer's
	// cookie), so the SDKs are told not to (writeError).
	errUpstreamHeaderTooLarge = apiError{502, "server_error", "upstream_bad_response", "", "The upstream model server's answer has a header larger than this gateway reads."}

	// errClientHungUp ends a request whose client hung up while it waited (queued,
	// or before a retry): nobody reads an answer, so none is written (hangUp).
	errClientHungUp = apiError{499, "invalid_request_error", "client_gone", "", "The client closed the connection before the answer."}

	// A coded body (gzip, …) would be scanned as JSON and fail as invalid_json,
	// which sends its developer looking for a JSON bug; 415 as RFC 9110 §15.5.16,
	// with the Accept-Encoding it asks for (serveCall).
	errContentEncoding = apiError{415, "invalid_request_error", "unsupported_content_encoding", "", "The request's Content-Encoding is not supported: send the body uncoded, without a Content-Encoding header."}

	// errKeyTwice refuses a key header given on two lines (authenticate): two keys,
	// two identities, of which the gateway may pick neither; nginx refuses a second
	// Authorization line with 400 too.
	errKeyTwice = apiError{400, "invalid_request_error", "duplicate_api_key", "", "The request sends its Authorization, api-key or x-api-key header on more than one line: send one API key, once."}
	// errAdminAuthTwice refuses an admin API call whose Authorization header has
	// more than one line.
	errAdminAuthTwice = apiError{400, "invalid_request_error", "duplicate_authorization", "", "The request sends its Authorization header on more than one line: send the admin token once."}
)

// appendError renders {"error":{"message","type","param","code"}}.
func appendError(dst []byte, e *apiError) []byte {
	return append(appendErrorMember(append(dst, '{'), e), '}')
}

// appendErrorMember appends e's "error" member, an object member without the
// object's braces (a Responses API error event has it after its own members).
func appendErrorMember(dst []byte, e *apiError) []byte {
	dst = append(dst, `"error":{"message":`...)
	dst = jsonscan.AppendQuote(dst, e.message)
	dst = append(dst, `,"type":`...)
	dst = jsonscan.AppendQuote(dst, e.typ)
	dst = append(dst, `,"param":`...)
	if e.param == "" {
		dst = append(dst, "null"...)
	} else {
		dst = jsonscan.AppendQuote(dst, e.param)
	}
	dst = append(dst, `,"code":`...)
	if e.code == "" {
		dst = append(dst, "null"...)
	} else {
		dst = jsonscan.AppendQuote(dst, e.code)
	}
	return append(dst, '}')
}

var (
	strJSON                = []byte("application/json")
	hdrWWWAuthenticate     = []byte("WWW-Authenticate")
	strAPIChallenge        = []byte(`Bearer realm="tollgate"`)
	strAPIChallengeInvalid = []byte(`Bearer realm="tollgate", error="invalid_token"`)
)

func writeError(resp *fasthttp.Response, e *apiError) {
	switch e {
	case &errNoKey, &errNotBearer, &errBadHeaderKey:
		// RFC 9110 11.6.1: a 401 names the scheme it wants; RFC 6750 3.1: an error
		// only when a key was sent.
		resp.Header.SetBytesKV(hdrWWWAuthenticate, strAPIChallenge)
	case &errBadKey:
		resp.Header.SetBytesKV(hdrWWWAuthenticate, strAPIChallengeInvalid)
	case &errKeyRevoked:
		resp.Header.SetBytesKV(hdrWWWAuthenticate, strAPIChallengeRevoked)
	case &errKeyRevokedHeader:
		resp.Header.SetBytesKV(hdrWWWAuthenticate, strAPIChallenge)
	case &errUpstreamTooLarge, &errUpstreamHeaderTooLarge:
		// A 502, which the SDKs would retry.
		setShouldRetry(&resp.Header, false)
	}
	resp.SetStatusCode(e.status)
	resp.Header.SetContentTypeBytes(strJSON)
	// Rendered on the stack and copied into the response's pooled body buffer, which
	// also replaces a raw body set before (a shared models list, never to be written
	// into): built from nil, a 401 cost 4 allocations where a 200 costs none, and a
	// flood of bad keys should be cheap. A message over the array (one quoting a long
	// model name) grows onto the heap.
	var buf [errorBodySize]byte
	resp.SetBody(appendError(buf[:0], e))
}

// writeAnthropicError is writeError for a Messages API call: the same status and
// headers, the body in that API's shape ({"type":"error","error":{"type","message"},
// "request_id"}), its type by the status as Anthropic's are.
func writeAnthropicError(resp *fasthttp.Response, e *apiError, reqID []byte) {
	writeError(resp, e)
	var buf [errorBodySize]byte
	resp.SetBody(providers.AppendAnthropicError(buf[:0], providers.AnthropicErrorType(e.status), messagesWording(e), b2s(reqID)))
}

// messagesWording is e's message for a Messages API client: the few that speak of
// OpenAI's API or its Authorization header say so in that API's terms.
func messagesWording(e *apiError) string {
	switch e {
	case &errMalformed:
		return msgMalformedMessages
	case &errNoKey:
		return msgNoKeyMessages
	}
	return e.message
}

const (
	msgMalformedMessages = "We could not parse the JSON body of your request. The Messages API expects a JSON payload."
	msgNoKeyMessages     = "You didn't provide an API key. Send it in the x-api-key header (or Authorization as Bearer YOUR_KEY)."
)

// errorBodySize holds the body of every fixed error above.
const errorBodySize = 512

// modelNotFound is 404 model_not_found naming the model the client sent (its own input,
// quoted and escaped).
func modelNotFound(name []byte) apiError {
	return apiError{404, "invalid_request_error", "model_not_found", "model",
		"The model `" + string(name) + "` does not exist or you do not have access to it."}
}

// wrongType is 400 model_not_supported for a model called on another type's URL: it says
// what the model is and which URL serves it.
func wrongType(name []byte, is providers.Kind) apiError {
	article := "a "
	if is == providers.Embeddings {
		article = "an "
	}
	return apiError{400, "invalid_request_error", "model_not_supported", "model",
		"The model `" + string(name) + "` is " + article + is.String() + " endpoint; call /v1" + is.Path() + "."}
}
