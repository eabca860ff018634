package gateway

import (
	"bytes"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/tollgate/tollgate/providers"
)

// fields are what the gateway reads of a request body; everything else is forwarded
// untouched.
type fields struct {
	model         [2]int
	streamOptions [2]int
	stream        bool
	includeUsage  bool
	// continuousUsage is whether the stream's chunks may carry usage of their own
	// choice (vLLM's stream_options.continuous_usage_stats, which it honours only
	// with include_usage).
	continuousUsage bool
	maxTokens       int64
	// capNamed is whether max_tokens or max_completion_tokens was given as a count
	// of 0 or more (a legacy completion with echo and max_tokens 0 scores its prompt
	// and generates nothing); maxTokens is 0 then.
	capNamed bool
	// maxOutput and outputNamed are max_output_tokens, the Responses API's cap, as
	// maxTokens and capNamed are for the others; run takes them for a Responses call.
	maxOutput   int64
	outputNamed bool
	// prevResponse is the span of the "previous_response_id" string between its
	// quotes, {-1, -1} when the last member of that name is not a string.
	prevResponse [2]int
	// user and safetyID are the spans of the "user" and "safety_identifier" strings
	// between their quotes, {-1, -1} when the last member of that name is not a
	// string (endUser picks one).
	user     [2]int
	safetyID [2]int
	// cacheKey is the span of the "prompt_cache_key" string between its quotes,
	// {-1, -1} when the last member of that name is not a string: the client's own
	// name for the requests that share a cached prefix (affinity places by it).
	cacheKey [2]int
	// promptBytes is the size of messages/prompt/input (a rerank's query and
	// documents) less the media strings in them, and mediaTokens the estimate of those
	// (promptMedia), for token estimates.
	promptBytes int
	mediaTokens int64
	// choices is n, the completions asked for (0 when not given or 1), and bestOf
	// is best_of, the completions a legacy completion generates to return the best n
	// of: max_tokens bounds each one (completions).
	choices int64
	bestOf  int64
	// prompts is how many prompts "prompt" holds (0 when not given): a legacy
	// completion answers each one.
	prompts int64
	// queryBytes is the size of a rerank's query less its media, queryMedia the
	// estimate of those (an image query), and documents how many documents it scores
	// (0 when not given).
	queryBytes int
	queryMedia int64
	documents  int64
	// scoreLeft and scoreRight are how many items the two sides of a score call
	// hold (the pair of members vLLM takes: scorePair), and scoreText and scoreMedia
	// the input its pairs make: the text in bytes, the media in tokens.
	scoreLeft, scoreRight int64
	scoreText, scoreMedia int64
	// system, metadata and messages are the spans of the last members of those
	// names, {0, 0} without one: a Messages API call's system prompt, its
	// metadata (user_id, its end user) and its messages (messagesAPI).
	system, metadata, messages [2]int
	// audioBytes is the size of an audio call's file (scanAudio), for its spend
	// estimate.
	audioBytes int
}

// input is the prompt as the upstream reads it, for the token estimate: its text in
// bytes and its media in tokens (promptMedia). A rerank scores the query with each
// document, as one input each (vLLM's cross-encoder and score templates; Jina and
// Cohere bill so), so its query, text and media, counts once a document.
// A score call is its pair's input alone (scorePair): vLLM reads no other member.
func (f *fields) input(kind providers.Kind) (text, media int64) {
	if kind == providers.Score {
		return f.scoreText, f.scoreMedia
	}
	text, media = int64(f.promptBytes), f.mediaTokens
	if kind == providers.Rerank && f.documents > 1 {
		text += int64(f.queryBytes) * (f.documents - 1)
		media += f.queryMedia * (f.documents - 1)
	}
	return text, media
}

// pairs is how many pairs a call of kind has the model score: a rerank's documents,
// a score call's larger side (1:1, 1:N and N:N make as many pairs as it holds; other
// counts the upstream refuses); none for other kinds.
func (f *fields) pairs(kind providers.Kind) int64 {
	switch kind {
	case providers.Rerank:
		return f.documents
	case providers.Score:
		return max(f.scoreLeft, f.scoreRight)
	}
	return 0
}

// scorePair reads the pair of sides vLLM takes (ScoreSides.Pair): the items each
// holds and the input the pairs make. Each pair is one input to the model (a
// cross-encoder's, a score template's), so one left item goes with every right item
// (1:N) and counts once a pair; N:N pairs item i with item i, each once. Media are counted at their rates
// (promptMedia). Without a pair all stay 0 (the upstream's to refuse).
func (f *fields) scorePair(sd *providers.ScoreSides) {
	left, right := sd.Pair()
	if left == nil {
		return
	}
	f.scoreLeft, f.scoreRight = scoreItems(left, false), scoreItems(right, true)
	ln, lm := promptMedia(left)
	rn, rm := promptMedia(right)
	reps := int64(1)
	if f.scoreLeft == 1 && f.scoreRight > 1 {
		reps = f.scoreRight
	}
	f.scoreText = int64(len(left)-ln)*reps + int64(len(right)-rn)
	f.scoreMedia = lm*reps + rm
}

// scoreItems is how many items a score side holds: a string or a multimodal object
// ({"content": [...]}) is one, a list (of both) one an element. A multimodal object
// alone on the right counts one item a part, as a rerank's documents do (older vLLM
// scored each part; newer takes the object as one item, refusing more than one image
// in it): the larger count of pairs.
func scoreItems(v []byte, right bool) int64 {
	switch {
	case v[0] == '"', v[0] == '{' && !right:
		return 1
	}
	return countDocuments(v)
}

// countDocuments is how many documents a rerank's documents value holds: the elements
// of a list (strings, Jina's {"text": ...} objects), or of the content list of vLLM's
// multimodal form ({"content": [{"type": "image_url", ...}, ...]}, one document a
// part); 0 for anything else (the upstream's to refuse). The body bounds the count.
func countDocuments(v []byte) int64 {
	if len(v) > 0 && v[0] == '{' {
		v = providers.MultimodalContent(v)
	}
	var a jsonscan.Array
	if !a.Reset(v) {
		return 0
	}
	var n int64
	for {
		if _, ok := a.Next(); !ok {
			return n
		}
		n++
	}
}

// completions is how many completions of up to max_tokens a request of kind asks the
// upstream to generate: none for embeddings, reranks and scores; n for chat; for a legacy completion the
// larger of n and best_of (all best_of are generated, and billed) for each prompt.
func (f *fields) completions(kind providers.Kind) int64 {
	switch kind {
	case providers.Embeddings, providers.Rerank, providers.Score, providers.CountTokens, providers.Tokenize, providers.Detokenize,
		providers.Transcription, providers.Translation:
		// An audio call's output has no bound it names: its usage settles it.
		return 0
	case providers.Completions:
		return max(f.nBounded(), f.bestOf, 1) * max(f.prompts, 1)
	}
	return max(f.nBounded(), 1)
}

// streamChoices is how many choices the answer to a request of kind holds, for a
// stream's end (providers.Call.Choices; 0 is one): a legacy completion's n for each
// of its prompts, as each prompt is answered n choices, indexed on from the last
// prompt's; n for chat. best_of is left out: it chooses among the completions it
// generates and answers n of them, and OpenAI does not stream it.
func (f *fields) streamChoices(kind providers.Kind) int64 {
	if kind == providers.Completions && f.prompts > 1 {
		// Up to 2^40 choices times 2^15 prompts: no overflow.
		return max(f.choices, 1) * f.prompts
	}
	return f.choices
}

// endUser is the span of the string that names the request's end user: OpenAI's
// safety_identifier, which replaces the deprecated user (openai-go marks User
// deprecated), when it is a non-empty string, else user; {-1, -1} without either.
func (f *fields) endUser() [2]int {
	if f.safetyID[1] > f.safetyID[0] {
		return f.safetyID
	}
	return f.user
}

// nBounded is n as the estimates count it: OpenAI allows up to 128, more is the
// upstream's to refuse.
func (f *fields) nBounded() int64 { return min(f.choices, 128) }

// readKeys are the body members whose values the gateway acts on: it rewrites
// "model", streams by "stream", forces or hides usage by "stream_options", charges
// limits by the token bounds, and sends a Responses call on to the replica that
// stored its "previous_response_id" (checking it is the caller's). The upstream must read what the gateway read, whatever
// its parser: one of these given twice, or a key a parser could take for one (escapes
// are decoded here; Go's encoding/json, behind Ollama and others, matches struct
// fields case-insensitively, with Unicode folding), is refused.
var readKeys = [...]string{"model", "stream", "stream_options", "max_tokens", "max_completion_tokens", "stream_options.include_usage",
	"max_output_tokens", "previous_response_id"}

const (
	keyModel = iota
	keyStream
	keyStreamOptions
	keyMaxTokens
	keyMaxCompletionTokens
	keyIncludeUsage
	keyMaxOutputTokens
	// keyPreviousResponse: the stored response a Responses call continues, which
	// picks its target and, with auth.response_secret, must be the caller's.
	keyPreviousResponse
)

// errTwice and errFolded are the answers to a read key given twice, and to a key that
// differs from one only in case.
var errTwice, errFolded [len(readKeys)]apiError

func init() {
	for i, k := range readKeys {
		errTwice[i] = apiError{400, "invalid_request_error", "invalid_value", k, "The " + k + " parameter is given more than once."}
		errFolded[i] = apiError{400, "invalid_request_error", "unknown_parameter", k,
			"Unrecognized request argument supplied: a key that differs from " + k + " only in case."}
	}
}

// reset sets f to a body's with none of the members read: their spans {-1, -1}.
func (f *fields) reset() {
	*f = fields{model: [2]int{-1, -1}, streamOptions: [2]int{-1, -1}, user: [2]int{-1, -1}, safetyID: [2]int{-1, -1},
		cacheKey: [2]int{-1, -1}, prevResponse: [2]int{-1, -1}}
}

// scanBody reads the fields the pipeline needs in one pass over body. It returns nil or
// the error to answer with.
func scanBody(body []byte, f *fields) *apiError {
	f.reset()
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		if jsonscan.Valid(body) {
			return &errNotObject
		}
		return &errMalformed
	}
	var keyBuf [32]byte
	var sides providers.ScoreSides
	var seen uint8 // bit i: readKeys[i] met
	once := func(i int) bool {
		if seen&(1<<i) != 0 {
			return false
		}
		seen |= 1 << i
		return true
	}
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		off := it.ValueOffset()
		if bytes.IndexByte(k, '\\') >= 0 {
			// Upstreams decode "mod\u0065l" as "model": so must the gateway, or a
			// client could set a field it rewrites or reads behind its back.
			k = unescapeKey(keyBuf[:0], k)
		}
		switch string(k) {
		case "model":
			if jsonscan.IsNull(v) {
				// As OpenAI answers a null model: none was given.
				return &errNoModel
			}
			if !jsonscan.IsString(v) {
				return &errModelType
			}
			if !once(keyModel) {
				return &errTwice[keyModel]
			}
			f.model = [2]int{off, off + len(v)}
		case "stream":
			b, ok := jsonscan.Bool(v)
			if !ok && !jsonscan.IsNull(v) {
				return &errStreamType
			}
			if !once(keyStream) {
				return &errTwice[keyStream]
			}
			f.stream = b
		case "stream_options":
			if !once(keyStreamOptions) {
				return &errTwice[keyStreamOptions]
			}
			if v[0] != '{' && !jsonscan.IsNull(v) {
				// OpenAI refuses it so, and no upstream reads include_usage
				// out of it.
				return &errOptionsType
			}
			f.streamOptions = [2]int{off, off + len(v)}
			var e *apiError
			if f.includeUsage, f.continuousUsage, e = includeUsage(v); e != nil {
				return e
			}
		case "max_tokens", "max_completion_tokens":
			i := keyMaxTokens
			if len(k) != len("max_tokens") {
				i = keyMaxCompletionTokens
			}
			if !once(i) {
				return &errTwice[i]
			}
			if n, ok := jsonscan.Count(v, 1<<40); ok && n >= 0 {
				// Upstreams take one bound or the other (vLLM and OpenAI prefer
				// max_completion_tokens); the estimate takes the larger. 2^40 is far
				// above any model's context, and low enough that the estimate built
				// on it cannot overflow. 5000.0 counts as 5000, as vLLM reads it.
				f.maxTokens = max(f.maxTokens, n)
				f.capNamed = true
			}
		case "max_output_tokens":
			if !once(keyMaxOutputTokens) {
				return &errTwice[keyMaxOutputTokens]
			}
			if n, ok := jsonscan.Count(v, 1<<40); ok && n >= 0 {
				f.maxOutput, f.outputNamed = n, true
			}
		case "n":
			if n, ok := jsonscan.Count(v, 1<<40); ok && n > 1 {
				f.choices = n
			}
		case "best_of":
			if n, ok := jsonscan.Count(v, 128); ok && n > 1 {
				f.bestOf = n
			}
		case "user", "safety_identifier":
			// The last member of a name is the one upstream parsers keep.
			span := [2]int{-1, -1}
			if jsonscan.IsString(v) {
				span = [2]int{off + 1, off + len(v) - 1}
			}
			if len(k) == len("user") {
				f.user = span
			} else {
				f.safetyID = span
			}
		case "previous_response_id":
			if !once(keyPreviousResponse) {
				return &errTwice[keyPreviousResponse]
			}
			f.prevResponse = [2]int{-1, -1}
			if jsonscan.IsString(v) {
				f.prevResponse = [2]int{off + 1, off + len(v) - 1}
			}
		case "prompt_cache_key":
			f.cacheKey = [2]int{-1, -1}
			if jsonscan.IsString(v) {
				f.cacheKey = [2]int{off + 1, off + len(v) - 1}
			}
		case "messages", "input", "instructions", "documents":
			// instructions: the Responses API's system message; documents: a
			// rerank's (and those a vLLM chat template renders into the prompt).
			f.addPrompt(v)
			if len(k) == len("messages") && k[0] == 'm' {
				f.messages = [2]int{off, off + len(v)}
			}
			if len(k) == len("documents") {
				f.documents = countDocuments(v)
				sides.Note(k, v)
			}
		case "system", "metadata":
			// A Messages API call's (messagesAPI).
			if len(k) == len("system") {
				f.system = [2]int{off, off + len(v)}
			} else {
				f.metadata = [2]int{off, off + len(v)}
			}
		case "queries", "items", "data_1", "data_2", "text_1", "text_2":
			// A score call's sides (vLLM's /score), read once the body is.
			sides.Note(k, v)
		case "query":
			// A rerank's query, which goes with each document (input).
			f.queryBytes, f.queryMedia = f.addPrompt(v)
		case "prompt":
			f.addPrompt(v)
			f.prompts = countPrompts(v)
		default:
			if i := foldedKey(k); i >= 0 {
				return &errFolded[i]
			}
			if foldedPromptKey(k) {
				// "Messages": an upstream whose parser folds case (Go's
				// encoding/json, the Anthropic translation) reads it as the prompt.
				f.addPrompt(v)
			}
		}
	}
	if it.Err() != nil {
		return &errMalformed
	}
	for _, c := range body[it.End():] {
		if c != ' ' && c != '\n' && c != '\r' && c != '\t' {
			return &errMalformed
		}
	}
	if f.model[0] < 0 {
		return &errNoModel
	}
	f.scorePair(&sides)
	return nil
}

// addPrompt counts the prompt value v (messages, input or prompt) for the token
// estimate: its media by promptMedia, the rest as text; it returns both.
func (f *fields) addPrompt(v []byte) (text int, media int64) {
	n, media := promptMedia(v)
	f.promptBytes += len(v) - n
	f.mediaTokens += media
	return len(v) - n, media
}

// Upstreams charge an image by its pixels and audio or video by how long it lasts, not
// by their bytes: a 1 MiB photo inline, 1.4 MB of base64, read as text at 4 bytes a
// token was ~350k tokens, above a 100k-a-minute limit's burst, so it waited for a full
// bucket. The settlement corrects these estimates either way.
const (
	// imageTokens is one image's estimate, inline or by URL: the most a common model
	// charges for one at default detail (Claude about 1,600 for 1.15 megapixels,
	// GPT-4o at most 1,105). vLLM's Qwen2.5-VL charges a large photo more.
	imageTokens = 1600
	// mediaKiBShift charges audio and video a token per KiB of their string (rounded
	// up): 16 kHz 16-bit WAV is 43 KB/s of base64, about 42 tokens a second, above
	// OpenAI's ~10, Whisper-based vLLM models' 25 and Gemini's 32; 720p H.264 at
	// 2.5 Mbit/s is ~400 a second, near Qwen2.5-VL's ~770 at 2 frames/s.
	mediaKiBShift = 10
)

// mediaKey is a member whose value is media: its key is head + "_" + tail (quotes
// included: each has an underscore, which base64 lacks, so promptMedia stops only at
// underscores), a string value is media when bare, and an object value holds its
// media in string members named member.
type mediaKey struct {
	head, tail string
	member     string
	bare       bool
	image      bool
}

// mediaKeys are the media parts of OpenAI's chat (image_url, input_audio) and vLLM's
// (audio_url, video_url; image_url as a plain string too).
var mediaKeys = [...]mediaKey{
	{`"image`, `url"`, `url`, true, true},
	{`"input`, `audio"`, `data`, false, false},
	{`"audio`, `url"`, `url`, true, false},
	{`"video`, `url"`, `url`, true, false},
}

// cost is the estimate of a media string of n bytes.
func (m *mediaKey) cost(n int) int64 {
	if m.image {
		return imageTokens
	}
	return int64(n+1<<mediaKiBShift-1) >> mediaKiBShift
}

// promptMedia finds the media in a prompt value v (validated JSON) without decoding
// it, and returns the bytes of their strings (quotes included) and their estimate: a
// string that is the value of an image_url, audio_url or video_url member, or the url
// member of an object value of one, or the data member of an input_audio object.
// Media inside another media member's value is part of it. A key written with
// escapes is not recognised: its value counts as text, the larger estimate.
func promptMedia(v []byte) (n int, tokens int64) {
	for i := 0; i < len(v); {
		u := bytes.IndexByte(v[i:], '_')
		if u < 0 {
			break
		}
		u += i
		i = u + 1
		var m *mediaKey
		for k := range mediaKeys {
			if h, t := mediaKeys[k].head, mediaKeys[k].tail; u >= len(h) && len(v)-u > len(t) &&
				string(v[u-len(h):u]) == h && string(v[u+1:u+1+len(t)]) == t {
				m = &mediaKeys[k]
				break
			}
		}
		// An unescaped quote before a name is its opening one (a closing quote is
		// followed by , : ] } or space); a colon after it makes it a key.
		if m == nil || escaped(v, u-len(m.head)) {
			continue
		}
		c := jsonscan.SkipSpace(v, u+1+len(m.tail))
		if c >= len(v) || v[c] != ':' {
			continue
		}
		end, dn, dt := mediaValue(v, jsonscan.SkipSpace(v, c+1), m)
		n += dn
		tokens += dt
		i = end
	}
	return n, tokens
}

// mediaValue reads the value of a media member m at v[k] and returns the offset past
// it, and the bytes and estimate of its media strings.
func mediaValue(v []byte, k int, m *mediaKey) (end, n int, tokens int64) {
	if k >= len(v) {
		return len(v), 0, 0
	}
	if v[k] == '"' {
		end = stringEnd(v, k)
		if m.bare {
			return end, end - k, m.cost(end - k)
		}
		return end, 0, 0
	}
	if v[k] != '{' {
		end, err := jsonscan.Skip(v, k)
		if err != nil {
			return len(v), 0, 0
		}
		return end, 0, 0
	}
	// The object was validated with the body: only its boundaries are looked for, and
	// strings, base64 mostly, are crossed by IndexByte rather than read byte by byte.
	i := jsonscan.SkipSpace(v, k+1)
	for i < len(v) && v[i] != '}' {
		if v[i] == ',' {
			i = jsonscan.SkipSpace(v, i+1)
		}
		ke := stringEnd(v, i)
		key := v[i+1 : max(ke-1, i+1)]
		i = jsonscan.SkipSpace(v, ke)
		i = jsonscan.SkipSpace(v, i+1) // past the colon
		if i >= len(v) {
			break
		}
		var ve int
		if v[i] == '"' {
			ve = stringEnd(v, i)
			if string(key) == m.member {
				n += ve - i
				tokens += m.cost(ve - i)
			}
		} else {
			var err error
			if ve, err = jsonscan.Skip(v, i); err != nil {
				return len(v), n, tokens
			}
		}
		i = jsonscan.SkipSpace(v, ve)
	}
	return min(i+1, len(v)), n, tokens
}

// stringEnd is the offset past the string that opens at v[k], in validated JSON.
func stringEnd(v []byte, k int) int {
	for i := k + 1; i < len(v); i++ {
		q := bytes.IndexByte(v[i:], '"')
		if q < 0 {
			break
		}
		i += q
		if !escaped(v, i) {
			return i + 1
		}
	}
	return len(v)
}

// escaped reports whether v[i] follows an odd run of backslashes.
func escaped(v []byte, i int) bool {
	b := 0
	for i-b > 0 && v[i-b-1] == '\\' {
		b++
	}
	return b%2 == 1
}

// maxPrompts bounds the prompts counted: far more than an upstream takes in one
// request, and low enough that an estimate of max_tokens (up to 2^40) times 128
// choices times this cannot overflow.
const maxPrompts = 1 << 15

// countPrompts is how many prompts a "prompt" value holds, as OpenAI's legacy
// completions read it: a string, or an array of token IDs, is one prompt; an array of
// strings, or of token-ID arrays, is one per element.
func countPrompts(v []byte) int64 {
	var a jsonscan.Array
	if !a.Reset(v) {
		return 1
	}
	var n int64
	for n < maxPrompts {
		e, ok := a.Next()
		if !ok {
			break
		}
		if len(e) == 0 || e[0] != '"' && e[0] != '[' {
			return 1 // token IDs
		}
		n++
	}
	return max(n, 1)
}

// foldedKey returns the index in readKeys of the key k differs from only in case, or
// -1. Only keys that begin with a letter some read key folds to, or outside ASCII,
// are compared.
func foldedKey(k []byte) int {
	if len(k) == 0 {
		return -1
	}
	if c := k[0]; c < 0x80 && c|0x20 != 'm' && c|0x20 != 's' && c|0x20 != 'p' {
		return -1
	}
	for i, rk := range readKeys {
		if i != keyIncludeUsage && bytes.EqualFold(k, []byte(rk)) {
			return i
		}
	}
	return -1
}

// foldedPromptKey reports whether k differs from messages, input or prompt only in
// case, Unicode folding included (encoding/json's: "meſſages" is messages). Only keys
// that begin with m, i or p in either case, or outside ASCII, are compared.
func foldedPromptKey(k []byte) bool {
	if len(k) == 0 {
		return false
	}
	if c := k[0]; c < 0x80 && c|0x20 != 'm' && c|0x20 != 'i' && c|0x20 != 'p' {
		return false
	}
	return bytes.EqualFold(k, strMessagesKey) || bytes.EqualFold(k, strInputKey) || bytes.EqualFold(k, strPromptKey)
}

var (
	strMessagesKey = []byte("messages")
	strInputKey    = []byte("input")
	strPromptKey   = []byte("prompt")
)

// includeUsage reads stream_options.include_usage as every parser would: refused when
// given twice or in another case. continuous is whether continuous_usage_stats can be
// on upstream: include_usage set and a continuous_usage_stats member neither false nor
// null. Every spelling a parser might take for it counts (given twice, in another
// case), since taking it for on costs only a cut stream's count (which keeps the
// estimate then).
func includeUsage(v []byte) (usage, continuous bool, e *apiError) {
	var it jsonscan.Iter
	if it.Reset(v) != nil {
		return false, false, nil // null, or not an object the upstream would take
	}
	var keyBuf [32]byte
	seen := false
	for {
		k, val, ok := it.Next()
		if !ok {
			return usage, usage && continuous, nil
		}
		if bytes.IndexByte(k, '\\') >= 0 {
			k = unescapeKey(keyBuf[:0], k)
		}
		switch {
		case string(k) == "include_usage":
			if seen {
				return false, false, &errTwice[keyIncludeUsage]
			}
			seen = true
			var isBool bool
			if usage, isBool = jsonscan.Bool(val); !isBool && !jsonscan.IsNull(val) {
				// OpenAI refuses it so; vLLM would read 1 or "yes" as true, and
				// the client's usage would be cut while it asked for it.
				return false, false, &errUsageType
			}
		case bytes.EqualFold(k, strIncludeUsage):
			return false, false, &errFolded[keyIncludeUsage]
		case bytes.EqualFold(k, strContinuousUsage):
			// vLLM's validation also takes "true", 1 and the like for true.
			if b, ok := jsonscan.Bool(val); b || !ok && !jsonscan.IsNull(val) {
				continuous = true
			}
		}
	}
}

var (
	strIncludeUsage    = []byte("include_usage")
	strContinuousUsage = []byte("continuous_usage_stats")
)

// unescapeKey decodes a member name that holds escapes (k is the name between its
// quotes) into dst; one that does not decode is returned as it is, and the iterator
// reports the body malformed.
func unescapeKey(dst, k []byte) []byte {
	if out, ok := jsonscan.AppendUnescape(dst, k); ok {
		return out
	}
	return k
}
