package gateway

import (
	"errors"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

var (
	errNotForm = apiError{400, "invalid_request_error", "invalid_content_type", "",
		"The audio API takes a multipart/form-data body (the file and the fields as form parts), with its boundary in the Content-Type header."}
	errFormNoModel = apiError{400, "invalid_request_error", "missing_model", "model", "You must provide a model parameter."}
	errFormNoFile  = apiError{400, "invalid_request_error", "missing_file", "file", "You must provide a file parameter: the audio to transcribe or translate."}
	// errInvocationAudio is an MLflow invocation of a transcriptions endpoint.
	errInvocationAudio = apiError{400, "invalid_request_error", "unsupported_operation", "",
		"A transcriptions endpoint is called at /v1/audio/transcriptions or /v1/audio/translations with a multipart/form-data body, not through the invocations route."}
)

// scanAudio reads an audio API call's multipart/form-data body into r.f, as scanBody
// reads a JSON one: the model part's value (its span, raw bytes), stream, the prompt's
// size for the token estimate. Its model name is r.modelName.
func (r *request) scanAudio(ctx *fasthttp.RequestCtx) *apiError {
	r.f.reset()
	boundary, ok := formBoundary(ctx.Request.Header.ContentType())
	if !ok {
		return &errNotForm
	}
	var ff formFields
	if err := scanForm(r.body, boundary, &ff); err != nil {
		e := apiError{400, "invalid_request_error", "invalid_multipart", "", "The multipart body could not be read: " + err.Error()}
		var fe *formError
		if errors.As(err, &fe) {
			e.param = fe.param
		}
		return &e
	}
	if ff.model[0] < 0 || ff.model[1] == ff.model[0] {
		return &errFormNoModel
	}
	if ff.fileBytes < 0 {
		return &errFormNoFile
	}
	raw := r.body[ff.model[0]:ff.model[1]]
	if !utf8.Valid(raw) {
		return &errModelType
	}
	r.modelName = append(r.modelName[:0], raw...)
	r.f.model, r.f.stream, r.f.includeUsage = ff.model, ff.stream, ff.streamIncludeUsage
	r.f.promptBytes, r.f.audioBytes = ff.textBytes, ff.fileBytes
	return nil
}
