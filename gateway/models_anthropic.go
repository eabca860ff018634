package gateway

import (
	"errors"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// Anthropic's SDKs call GET /v1/models and GET /v1/models/{id} on the base URL they
// send Messages API calls to, and read Anthropic's shapes: a model object is
// {"type":"model","id","display_name","created_at"}, a list one page of them with
// "has_more", "first_id" and "last_id", paged by after_id / before_id. They always
// send anthropic-version, which OpenAI's never do: with it the listings answer in
// those shapes, with the same models, key checks and bookkeeping as OpenAI's.

// listedModel is one model of the listings, an endpoint or one of its aliases,
// rendered once per config.
type listedModel struct {
	id string
	// quoted is id as a JSON string: a page's first_id or last_id.
	quoted []byte
	// object is Anthropic's model object.
	object []byte
}

// hdrAnthropicVersion names the Anthropic API version a request is written for.
const hdrAnthropicVersion = "Anthropic-Version"

// anthropicClient reports whether a request comes from an Anthropic SDK (or a client
// written against Anthropic's API), by the anthropic-version header it sends.
func anthropicClient(h *fasthttp.RequestHeader) bool {
	return len(h.Peek(hdrAnthropicVersion)) > 0
}

// anthropicModels renders the model objects of every endpoint and alias, in the order
// of OpenAI's list (modelsBody): display_name is the endpoint's name (for an alias,
// its endpoint's), created_at the instant OpenAI's list gives as created.
func (rt *runtime) anthropicModels() []listedModel {
	createdAt := time.Unix(rt.created, 0).UTC().AppendFormat(nil, time.RFC3339)
	var list []listedModel
	for _, ec := range rt.cfg.Endpoints {
		list = append(list, newListedModel(ec.Name, ec.Name, createdAt))
		for _, a := range ec.Aliases {
			list = append(list, newListedModel(a, ec.Name, createdAt))
		}
	}
	return list
}

func newListedModel(id, display string, createdAt []byte) listedModel {
	const head = `{"type":"model","id":`
	b := append(make([]byte, 0, 64+2*len(id)+2*len(display)), head...)
	b = jsonscan.AppendQuote(b, id)
	m := listedModel{id: id, quoted: b[len(head):len(b):len(b)]}
	b = append(b, `,"display_name":`...)
	b = jsonscan.AppendQuote(b, display)
	b = append(b, `,"created_at":"`...)
	b = append(b, createdAt...)
	m.object = append(b, `"}`...)
	return m
}

// anthropicList is the list of the models of the endpoints allowed, pointing into the
// runtime's (rt.anthropic): a key holds a pointer per model it may use, not a copy.
func (rt *runtime) anthropicList(allowed []bool) []*listedModel {
	n := 0
	for ei, ec := range rt.cfg.Endpoints {
		if allowed[ei] {
			n += 1 + len(ec.Aliases)
		}
	}
	list := make([]*listedModel, 0, n)
	i := 0
	for ei, ec := range rt.cfg.Endpoints {
		for range 1 + len(ec.Aliases) {
			if allowed[ei] {
				list = append(list, &rt.anthropic[i])
			}
			i++
		}
	}
	return list
}

// anthropicModel is the model object of the endpoint or alias named id, nil for none.
func (rt *runtime) anthropicModel(id []byte) []byte {
	for i := range rt.anthropic {
		if rt.anthropic[i].id == string(id) {
			return rt.anthropic[i].object
		}
	}
	return nil
}

// The Models API's list parameters, and its limits on limit (1 to 1000, 20 unless
// given), as Anthropic's API reference gives them.
var (
	argLimit    = []byte("limit")
	argAfterID  = []byte("after_id")
	argBeforeID = []byte("before_id")
)

const (
	anthropicPageDefault = 20
	anthropicPageMax     = 1000
)

// The list's refusals of its parameters, worded as Anthropic's API words its
// validation errors ("field: what is wrong"); Anthropic's error shape gives them no
// code, the access log its own.
var (
	errLimitNotInt = apiError{400, "invalid_request_error", "invalid_value", "limit", "limit: Input should be a valid integer, unable to parse string as an integer"}
	errLimitLow    = apiError{400, "invalid_request_error", "invalid_value", "limit", "limit: Input should be greater than or equal to 1"}
	errLimitHigh   = apiError{400, "invalid_request_error", "invalid_value", "limit", "limit: Input should be less than or equal to " + strconv.Itoa(anthropicPageMax)}
	errBothCursors = apiError{400, "invalid_request_error", "invalid_value", "before_id", "before_id and after_id may not both be given: page forward with after_id or back with before_id."}
)

// pageLimit reads limit as Anthropic's API does: a whole number, written in decimal,
// from 1 to 1000.
func pageLimit(args *fasthttp.Args) (int, *apiError) {
	if !args.HasBytes(argLimit) {
		return anthropicPageDefault, nil
	}
	v := args.PeekBytes(argLimit)
	n, err := strconv.ParseInt(b2s(v), 10, 64)
	if err != nil {
		if !errors.Is(err, strconv.ErrRange) {
			return 0, &errLimitNotInt
		}
		// A number too big to read is still a number, out of range one way.
		if v[0] == '-' {
			return 0, &errLimitLow
		}
		return 0, &errLimitHigh
	}
	switch {
	case n < 1:
		return 0, &errLimitLow
	case n > anthropicPageMax:
		return 0, &errLimitHigh
	}
	return int(n), nil
}

// unknownCursor refuses an after_id or before_id that names no model of the caller's
// list: one that does not exist, or one its key may not use, alike.
func unknownCursor(param string, id []byte) *apiError {
	return &apiError{400, "invalid_request_error", "invalid_value", param,
		param + ": `" + string(id) + "` is not the ID of a model in this list."}
}

// cursorAt is the index in list of the model named id, -1 for none.
func cursorAt(list []*listedModel, id []byte) int {
	for i, m := range list {
		if m.id == string(id) {
			return i
		}
	}
	return -1
}

// writeAnthropicPage answers a list request with the page of list its parameters ask
// for: limit models after after_id, or the limit models just before before_id (in the
// list's order), or the first limit; has_more says whether more lie beyond the page in
// the direction asked (before it for before_id), as Anthropic's does.
func writeAnthropicPage(ctx *fasthttp.RequestCtx, list []*listedModel) *apiError {
	args := ctx.QueryArgs()
	limit, e := pageLimit(args)
	if e != nil {
		return e
	}
	after, before := args.HasBytes(argAfterID), args.HasBytes(argBeforeID)
	lo, hi := 0, min(limit, len(list))
	more := limit < len(list)
	switch {
	case after && before:
		return &errBothCursors
	case after:
		id := args.PeekBytes(argAfterID)
		i := cursorAt(list, id)
		if i < 0 {
			return unknownCursor("after_id", id)
		}
		lo = i + 1
		hi = min(lo+limit, len(list))
		more = hi < len(list)
	case before:
		id := args.PeekBytes(argBeforeID)
		i := cursorAt(list, id)
		if i < 0 {
			return unknownCursor("before_id", id)
		}
		lo, hi = max(0, i-limit), i
		more = lo > 0
	}
	resp := &ctx.Response
	resp.Header.SetContentTypeBytes(strModelsJSON)
	resp.AppendBody(strPageData)
	for i, m := range list[lo:hi] {
		if i > 0 {
			resp.AppendBody(strComma)
		}
		resp.AppendBody(m.object)
	}
	if more {
		resp.AppendBody(strPageMore)
	} else {
		resp.AppendBody(strPageNoMore)
	}
	if lo == hi {
		resp.AppendBody(strPageEmpty)
		return nil
	}
	resp.AppendBody(strPageFirst)
	resp.AppendBody(list[lo].quoted)
	resp.AppendBody(strPageLast)
	resp.AppendBody(list[hi-1].quoted)
	resp.AppendBody(strBraceClose)
	return nil
}

var (
	strPageData   = []byte(`{"data":[`)
	strComma      = []byte(",")
	strPageMore   = []byte(`],"has_more":true`)
	strPageNoMore = []byte(`],"has_more":false`)
	strPageEmpty  = []byte(`,"first_id":null,"last_id":null}`)
	strPageFirst  = []byte(`,"first_id":`)
	strPageLast   = []byte(`,"last_id":`)
	strBraceClose = []byte("}")
)
