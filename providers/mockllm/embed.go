package mockllm

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"strconv"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

// parseEmbeddings reads an embeddings request.
func (st *state) parseEmbeddings(body []byte) *badRequest {
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return errJSON
	}
	var input []byte
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch string(k) {
		case "model":
			if e := st.setModel(v); e != nil {
				return e
			}
		case "input":
			input = v
		case "encoding_format":
			switch string(v) {
			case `"float"`, "null":
			case `"base64"`:
				st.base64 = true
			default:
				return &badRequest{msg: "encoding_format: Input should be 'float' or 'base64'", param: "encoding_format"}
			}
		case "dimensions":
			if isNull(v) {
				continue
			}
			if e := st.setDims(v); e != nil {
				return e
			}
		case "request_id":
			if e := st.setRequestID(v); e != nil {
				return e
			}
		}
	}
	if it.Err() != nil || !onlySpaceAfter(body, it.End()) {
		return errJSON
	}
	if input == nil {
		return &badRequest{msg: "input: Field required", param: "input"}
	}
	if !st.parseInputs(input) {
		return &badRequest{msg: "input: Input should be a non-empty string, list of strings, list of tokens or list of token lists", param: "input"}
	}
	return nil
}

// setDims reads dimensions. mockllm's model is a Matryoshka one of EmbeddingDim
// components: a shorter vector is its head, normalized again, and a longer one is
// refused (vLLM never answers a vector longer than its model's, and OpenAI refuses
// dimensions above a model's own), in the words of vLLM's PoolingParams check of
// matryoshka_dimensions.
func (st *state) setDims(v []byte) *badRequest {
	n, ok := jsonscan.Int(v)
	switch {
	case !ok:
		return &badRequest{msg: "dimensions: Input should be a valid integer", param: "dimensions"}
	case n < 1:
		return &badRequest{msg: "Dimensions must be greater than 0", param: "dimensions", serving: true}
	case n > int64(st.s.opts.EmbeddingDim):
		return &badRequest{param: "dimensions", serving: true,
			msg: "Model \"" + st.s.opts.Model + "\" only supports matryoshka dimensions up to " +
				strconv.Itoa(st.s.opts.EmbeddingDim) + ", use other output dimensions will lead to poor results."}
	}
	st.dims = int(n)
	return nil
}

func (s *Server) embeddings(ctx *fasthttp.RequestCtx, st *state) {
	if e := st.parseEmbeddings(ctx.PostBody()); e != nil {
		s.badRequest(ctx, st, e)
		return
	}
	if !s.admit(ctx, st) {
		return
	}
	for _, it := range st.items {
		st.promptTokens += it.tokens
	}
	s.promptTok.Add(int64(st.promptTokens))
	alive := st.wait(st.ttft())
	s.releaseSeq()
	st.held = false
	if !alive {
		ctx.SetConnectionClose()
		return
	}

	dim := s.opts.EmbeddingDim
	if st.dims > 0 {
		dim = st.dims
	}
	st.idA, st.idB = s.nextID(st.items[0].h)
	b := st.out[:0]
	b = appendHead(b, st, "embd-", "list")
	b = append(b, `,"data":[`...)
	for i, it := range st.items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"object":"embedding","embedding":`...)
		st.vec = unitVector(st.vec[:0], it.h, dim)
		if st.base64 {
			b, st.scratch = appendBase64Floats(b, st.vec, st.scratch[:0])
		} else {
			b = appendFloats(b, st.vec)
		}
		b = append(b, '}')
	}
	b = append(b, `],"usage":{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(st.promptTokens), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(st.promptTokens), 10)
	b = append(b, `,"completion_tokens":0,"prompt_tokens_details":null}}`...)
	st.out = b
	s.setJSON(ctx, st, fasthttp.StatusOK)
}

// unitVector derives a deterministic vector of length dim from h, scaled to norm 1.
// Components are float32 so the float and base64 encodings carry the same numbers.
func unitVector(v []float32, h uint64, dim int) []float32 {
	var sum float64
	for j := 0; j < dim; j++ {
		x := float32(int32(uint32(mix(h+uint64(j+1)*golden)>>32))) / (1 << 31)
		v = append(v, x)
		sum += float64(x) * float64(x)
	}
	if sum == 0 {
		v[0], sum = 1, 1
	}
	inv := 1 / math.Sqrt(sum)
	for j := range v {
		v[j] = float32(float64(v[j]) * inv)
	}
	return v
}

func appendFloats(b []byte, v []float32) []byte {
	b = append(b, '[')
	for j, x := range v {
		if j > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, float64(x), 'g', -1, 32)
	}
	return append(b, ']')
}

// appendBase64Floats encodes v as OpenAI does for encoding_format "base64": the
// little-endian float32 bytes, standard base64, as a JSON string.
func appendBase64Floats(b []byte, v []float32, scratch []byte) ([]byte, []byte) {
	for _, x := range v {
		scratch = binary.LittleEndian.AppendUint32(scratch, math.Float32bits(x))
	}
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, scratch)
	return append(b, '"'), scratch
}
