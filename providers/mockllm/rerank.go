package mockllm

import (
	"cmp"
	"math"
	"slices"
	"strconv"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

// vLLM's scoring API (vllm/entrypoints/pooling/score): POST /rerank, /v1/rerank
// (Jina's shape) and /v2/rerank (Cohere's) take a query and documents and answer them
// ranked; POST /score and /v1/score take two sides (queries and documents, queries
// and items, data_1 and data_2, or text_1 and text_2) and answer one score per pair,
// in order. Both run as embeddings do here: the same model check, length check
// against MaxModelLen, error-rate draw, scheduler slot and TTFT, and the same
// /metrics series (prompt tokens, requests by route).

// scorePair is one (query, document) pair of a rerank or score request. q and doc are
// raw JSON strings in the request body, used only inside the handler.
type scorePair struct {
	q, doc []byte
	index  int
	tokens int
	score  float64
}

// rankState is a rerank or score request's part of the pooled state.
type rankState struct {
	pairs []scorePair
	// lefts are a score request's left items (raw JSON strings).
	lefts [][]byte
	// words are the distinct word hashes of the query last scored (lastQ), sorted,
	// and seen marks those the document being scored holds.
	words []uint64
	seen  []bool
	lastQ []byte
	text  []byte // a decoded string
	// topN is rerank's top_n; trunc the tokens truncate_prompt_tokens keeps of a
	// pair, 0 for all.
	topN  int64
	trunc int
}

// reset keeps the buffers' capacity for the next request.
func (r *rankState) reset() rankState {
	return rankState{pairs: r.pairs[:0], lefts: r.lefts[:0], words: r.words[:0], seen: r.seen[:0], text: r.text[:0]}
}

var (
	errNoQuery     = &badRequest{msg: "query: Field required", param: "query"}
	errQuery       = &badRequest{msg: "query: Input should be a valid string", param: "query"}
	errNoDocuments = &badRequest{msg: "documents: Field required", param: "documents"}
	errDocuments   = &badRequest{msg: "documents: Input should be a valid list of strings or of objects with a text string", param: "documents"}
	errTopN        = &badRequest{msg: "top_n: Input should be a valid integer", param: "top_n"}
	// The refusals of vLLM's validate_score_input (pooling/score/utils.py), raised
	// while serving.
	errScoreLens   = &badRequest{msg: "Input lengths must be either 1:1, 1:N or N:N", serving: true}
	errNoLeft      = &badRequest{msg: "At least one text element must be given", serving: true}
	errNoRight     = &badRequest{msg: "At least one text_pair element must be given", serving: true}
	errTruncType   = &badRequest{msg: "truncate_prompt_tokens: Input should be a valid integer", param: "truncate_prompt_tokens"}
	errTruncBelow  = &badRequest{msg: "truncate_prompt_tokens: Input should be greater than or equal to -1", param: "truncate_prompt_tokens"}
	strMultiModalN = []byte(`,"multi_modal":null},"relevance_score":`)
)

// parseRankCommon reads the members RerankRequest and ScoreRequest share; the rest
// (priority, softmax, activation, use_activation, mm_processor_kwargs and any extra
// member, as return_documents) are accepted and ignored, as vLLM's model accepts
// extra members.
func (st *state) parseRankCommon(k, v []byte) *badRequest {
	switch string(k) {
	case "model":
		return st.setModel(v)
	case "truncate_prompt_tokens":
		if isNull(v) {
			st.rank.trunc = 0
			return nil
		}
		n, ok := laxInt(v)
		switch {
		case !ok:
			return errTruncType
		case n < -1:
			return errTruncBelow
		case n == -1:
			// vLLM's _validate_truncation_size: -1 is the whole context.
			n = int64(st.s.opts.MaxModelLen)
		case n > int64(st.s.opts.MaxModelLen):
			return &badRequest{serving: true, msg: "truncate_prompt_tokens value (" + strconv.FormatInt(n, 10) +
				") is greater than max_model_len (" + strconv.Itoa(st.s.opts.MaxModelLen) + "). Please, select a smaller truncation size."}
		}
		st.rank.trunc = int(n)
	}
	return nil
}

// parseRerank reads a RerankRequest: query, documents (strings, or Jina's objects
// with a text member), top_n.
func (st *state) parseRerank(body []byte) *badRequest {
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return errJSON
	}
	var query, docs []byte
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch string(k) {
		case "query":
			query = v
		case "documents":
			docs = v
		case "top_n":
			n, ok := laxInt(v)
			if !ok {
				return errTopN
			}
			st.rank.topN = n
		default:
			if e := st.parseRankCommon(k, v); e != nil {
				return e
			}
		}
	}
	if it.Err() != nil || !onlySpaceAfter(body, it.End()) {
		return errJSON
	}
	switch {
	case query == nil:
		return errNoQuery
	case !jsonscan.IsString(query):
		return errQuery
	case docs == nil:
		return errNoDocuments
	}
	var a jsonscan.Array
	if !a.Reset(docs) {
		return errDocuments
	}
	for i := 0; ; i++ {
		v, ok := a.Next()
		if !ok {
			return nil
		}
		if !jsonscan.IsString(v) {
			// Jina's clients send {"text": "..."}.
			if v[0] != '{' {
				return errDocuments
			}
			if v, ok = jsonscan.Field(v, "text"); !ok || !jsonscan.IsString(v) {
				return errDocuments
			}
		}
		st.rank.pairs = append(st.rank.pairs, scorePair{q: query, doc: v, index: i})
	}
}

// scoreMembers are the members of vLLM's ScoreRequest that hold its sides, and
// scoreShapes its pairs of them as its union of four request models lists them
// (pooling/score/protocol.py): queries with documents, queries with items, data_1 with
// data_2, text_1 with text_2 (the only one older vLLM knows).
var (
	scoreMembers = [...]string{"queries", "documents", "items", "data_1", "data_2", "text_1", "text_2"}
	scoreShapes  = [...][2]int{{0, 1}, {0, 2}, {3, 4}, {5, 6}}
)

// errNoMember and errMember are the refusals of a side missing, and of one that is not
// a string or a list of strings (a multimodal object included: the mock is a text
// model), by scoreMembers index.
var errNoMember, errMember = func() (no, bad [len(scoreMembers)]*badRequest) {
	for i, m := range scoreMembers {
		no[i] = &badRequest{msg: m + ": Field required", param: m}
		bad[i] = &badRequest{msg: m + ": Input should be a valid string or list of strings", param: m}
	}
	return no, bad
}()

// parseScore reads a ScoreRequest: the first of scoreShapes whose two sides are
// given as strings or lists of strings, as vLLM's union validates its models in
// turn. A body that has none is refused with one of the errors vLLM's validation
// lists (each model's, in turn): the first problem of the first shape the body names a
// member of (a member missing, or not a side), or that queries is missing when it
// names none, the union's first model's first.
// The pairs are made once the model is checked (pairScore).
func (st *state) parseScore(body []byte) *badRequest {
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return errJSON
	}
	var sides [len(scoreMembers)][]byte
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		member := -1
		for i, m := range scoreMembers {
			if string(k) == m {
				member = i
				break
			}
		}
		if member >= 0 {
			sides[member] = v
			continue
		}
		if e := st.parseRankCommon(k, v); e != nil {
			return e
		}
	}
	if it.Err() != nil || !onlySpaceAfter(body, it.End()) {
		return errJSON
	}
	for _, sh := range scoreShapes {
		l, r := sides[sh[0]], sides[sh[1]]
		if l != nil && r != nil && scoreSide(l) && scoreSide(r) {
			st.scoreTexts(l, true)
			st.scoreTexts(r, false)
			return nil
		}
	}
	for _, sh := range scoreShapes {
		if sides[sh[0]] == nil && sides[sh[1]] == nil {
			continue
		}
		for _, m := range sh {
			switch {
			case sides[m] == nil:
				return errNoMember[m]
			case !scoreSide(sides[m]):
				return errMember[m]
			}
		}
	}
	return errNoMember[0]
}

// scoreSide reports whether raw is a side the mock takes: a string or a list of
// strings.
func scoreSide(raw []byte) bool {
	if jsonscan.IsString(raw) {
		return true
	}
	var a jsonscan.Array
	if !a.Reset(raw) {
		return false
	}
	for {
		v, ok := a.Next()
		if !ok {
			return true
		}
		if !jsonscan.IsString(v) {
			return false
		}
	}
}

// scoreTexts reads a left side (into lefts) or a right one (into the pairs'
// documents), scoreSide's already.
func (st *state) scoreTexts(raw []byte, left bool) {
	if jsonscan.IsString(raw) {
		st.addText(raw, left)
		return
	}
	var a jsonscan.Array
	a.Reset(raw)
	for {
		v, ok := a.Next()
		if !ok {
			return
		}
		st.addText(v, left)
	}
}

func (st *state) addText(v []byte, left bool) {
	r := &st.rank
	if left {
		r.lefts = append(r.lefts, v)
	} else {
		r.pairs = append(r.pairs, scorePair{doc: v, index: len(r.pairs)})
	}
}

// pairScore matches the left side to the right as vLLM's validate_score_input does:
// 1:1, 1:N (the one left item with each right item) or N:N.
func (st *state) pairScore() *badRequest {
	r := &st.rank
	n1, n2 := len(r.lefts), len(r.pairs)
	switch {
	case n1 > 1 && n1 != n2:
		return errScoreLens
	case n1 == 0:
		return errNoLeft
	case n2 == 0:
		return errNoRight
	}
	for i := range r.pairs {
		r.pairs[i].q = r.lefts[min(i, n1-1)]
	}
	return nil
}

// countPairs counts each pair's tokens as embeddings count an input (about four bytes
// a token, query and document each at least one), cut to truncate_prompt_tokens, and
// refuses a pair longer than MaxModelLen in vLLM's words (_validate_input: "score" for
// a score request, "embedding generation" for rerank, which its table leaves out).
func (st *state) countPairs(op string) *badRequest {
	total := 0
	for i := range st.rank.pairs {
		p := &st.rank.pairs[i]
		p.tokens = promptTokens(strLen(p.q)) + promptTokens(strLen(p.doc))
		if st.rank.trunc > 0 {
			p.tokens = min(p.tokens, st.rank.trunc)
		}
		if m := st.s.opts.MaxModelLen; p.tokens > m {
			return &badRequest{serving: true, msg: "This model's maximum context length is " + strconv.Itoa(m) +
				" tokens. However, you requested " + strconv.Itoa(p.tokens) + " tokens in the input for " + op +
				". Please reduce the length of the input."}
		}
		total += p.tokens
	}
	st.promptTokens = total
	return nil
}

// rerank answers POST /rerank, /v1/rerank and /v2/rerank.
func (s *Server) rerank(ctx *fasthttp.RequestCtx, st *state) {
	if e := st.parseRerank(ctx.PostBody()); e != nil {
		s.badRequest(ctx, st, e)
		return
	}
	if !s.rankAdmit(ctx, st, "embedding generation") {
		return
	}
	r := &st.rank
	// vLLM sorts by relevance_score, descending, with Python's stable sort, then
	// keeps top_n when it is above 0.
	slices.SortStableFunc(r.pairs, func(a, b scorePair) int { return cmp.Compare(b.score, a.score) })
	n := len(r.pairs)
	if r.topN > 0 && r.topN < int64(n) {
		n = int(r.topN)
	}
	st.idA, st.idB = s.nextID(promptHash(s.opts.Seed, 0, false, r.pairs[0].q))
	b := append(st.out[:0], `{"id":"rerank-`...)
	b = appendID(b, st)
	b = append(b, `","model":`...)
	b = append(b, s.modelJSON...)
	b = append(b, `,"usage":{"total_tokens":`...)
	b = strconv.AppendInt(b, int64(st.promptTokens), 10)
	b = append(b, `},"results":[`...)
	for i, p := range r.pairs[:n] {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, int64(p.index), 10)
		// The document's string as the request spelled it: valid JSON, the same
		// text.
		b = append(b, `,"document":{"text":`...)
		b = append(b, p.doc...)
		b = append(b, strMultiModalN...)
		b = appendPyFloat(b, p.score)
		b = append(b, '}')
	}
	st.out = append(b, "]}"...)
	s.setJSON(ctx, st, fasthttp.StatusOK)
}

// score answers POST /score and /v1/score.
func (s *Server) score(ctx *fasthttp.RequestCtx, st *state) {
	if e := st.parseScore(ctx.PostBody()); e != nil {
		s.badRequest(ctx, st, e)
		return
	}
	if !s.rankAdmit(ctx, st, "score") {
		return
	}
	r := &st.rank
	st.idA, st.idB = s.nextID(promptHash(s.opts.Seed, 0, false, r.pairs[0].q))
	b := appendHead(st.out[:0], st, "score-", "list")
	b = append(b, `,"data":[`...)
	for i, p := range r.pairs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, int64(p.index), 10)
		b = append(b, `,"object":"score","score":`...)
		b = appendPyFloat(b, p.score)
		b = append(b, '}')
	}
	b = append(b, `],"usage":`...)
	b = appendUsage(b, st.promptTokens, 0)
	st.out = append(b, `,"prompt_tokens_details":null}}`...)
	s.setJSON(ctx, st, fasthttp.StatusOK)
}

// rankAdmit runs a parsed rerank or score request as embeddings run: the model (404
// before any check of the inputs, as vLLM's _check_model), the pairs and their
// length, then admit's error-rate draw and scheduler slot, the prompt tokens counted
// and the TTFT waited. It scores the pairs; false means the answer has been written,
// or the client is gone.
func (s *Server) rankAdmit(ctx *fasthttp.RequestCtx, st *state, op string) bool {
	if !s.modelOK(st.modelRaw, st.scratch) {
		s.modelNotFound(ctx, st, st.modelRaw)
		return false
	}
	var e *badRequest
	switch {
	case st.route == rScore || st.route == rScoreV1:
		e = st.pairScore()
	case len(st.rank.pairs) == 0:
		e = errNoRight
	}
	if e == nil {
		e = st.countPairs(op)
	}
	if e != nil {
		s.badRequest(ctx, st, e)
		return false
	}
	if !s.admit(ctx, st) {
		return false
	}
	s.promptTok.Add(int64(st.promptTokens))
	alive := st.wait(st.ttft())
	s.releaseSeq()
	st.held = false
	if !alive {
		ctx.SetConnectionClose()
		return false
	}
	for i := range st.rank.pairs {
		p := &st.rank.pairs[i]
		p.score = st.relevance(p.q, p.doc)
	}
	return true
}

// appendID appends an answer's id after its prefix: the request's id, else the
// server's 32 hex digits, as appendHead does.
func appendID(b []byte, st *state) []byte {
	if len(st.reqID) > 0 {
		return append(b, st.reqID...)
	}
	return appendHex64(appendHex64(b, st.idA), st.idB)
}

// relevance scores a document (raw JSON string) for a query: a deterministic
// word-overlap score in (0, 1), so that tests can predict the order. Words are runs of
// ASCII letters and digits (and of non-ASCII bytes), compared without case. f is the
// share of the query's distinct words the document holds and d the share of the
// document's words that are query words; x = f + d/(q+1), q being the query's
// distinct words, so that d only orders documents of equal f; the score is the
// logistic of 8x-4. A document sharing no word scores 1/(1+e^4) ≈ 0.018, one holding
// every query word and nothing else 1/(1+e^-(4+8/(q+1))).
func (st *state) relevance(q, doc []byte) float64 {
	r := &st.rank
	if string(q) != string(r.lastQ) {
		r.lastQ = q
		r.text, _ = appendUnquoted(r.text[:0], q)
		r.words = r.words[:0]
		for i := 0; ; {
			var h uint64
			var ok bool
			if h, i, ok = nextWord(r.text, i); !ok {
				break
			}
			r.words = append(r.words, h)
		}
		slices.Sort(r.words)
		r.words = slices.Compact(r.words)
		r.seen = slices.Grow(r.seen[:0], len(r.words))[:len(r.words)]
	}
	clear(r.seen)
	r.text, _ = appendUnquoted(r.text[:0], doc)
	distinct, hits, total := 0, 0, 0
	for i := 0; ; {
		var h uint64
		var ok bool
		if h, i, ok = nextWord(r.text, i); !ok {
			break
		}
		total++
		if j, found := slices.BinarySearch(r.words, h); found {
			hits++
			if !r.seen[j] {
				r.seen[j] = true
				distinct++
			}
		}
	}
	var x float64
	if n := len(r.words); n > 0 {
		x = float64(distinct) / float64(n)
		if total > 0 {
			x += float64(hits) / float64(total) / float64(n+1)
		}
	}
	return 1 / (1 + math.Exp(4-8*x))
}

// nextWord finds the word at or after i in b and returns its FNV-1a hash, lower-cased,
// and the index after it; ok is false when none is left.
func nextWord(b []byte, i int) (h uint64, next int, ok bool) {
	for i < len(b) && !wordByte(b[i]) {
		i++
	}
	if i == len(b) {
		return 0, i, false
	}
	h = 14695981039346656037
	for ; i < len(b) && wordByte(b[i]); i++ {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		h = (h ^ uint64(c)) * 1099511628211
	}
	return h, i, true
}

func wordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}
