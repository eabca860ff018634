package gateway

import (
	"bytes"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"strconv"
	"strings"
	"testing"
)

// formRef is what Go's mime/multipart reads of a form: the reference scanForm is
// held to.
type formRef struct {
	model, format, prompt string
	models, formats       int
	stream, usage         string
	streams, usages       int
	fileBytes, files      int
	promptParts, parts    int
	nameless, textAsFile  bool
	streamSet, usageSet   bool
	modelSet, formatSet   bool
	promptSet             bool
}

// readFormRef reads body as Go's mime/multipart does, part by part, without decoding
// any Content-Transfer-Encoding (NextRawPart): scanForm reads the raw bytes, as
// Starlette does.
func readFormRef(body []byte, boundary string) (formRef, error) {
	ref := formRef{fileBytes: -1}
	r := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		p, err := r.NextRawPart()
		if err == io.EOF {
			return ref, nil
		}
		if err != nil {
			return ref, err
		}
		ref.parts++
		content, err := io.ReadAll(p)
		if err != nil {
			return ref, err
		}
		name := p.FormName()
		if name == "" {
			ref.nameless = true
		}
		text := p.FileName() != ""
		switch name {
		case "model":
			ref.models++
			if !ref.modelSet {
				ref.model, ref.modelSet = string(content), true
			}
			ref.textAsFile = ref.textAsFile || text
		case "file":
			ref.files++
			if ref.fileBytes < 0 {
				ref.fileBytes = len(content)
			}
		case "stream":
			ref.streams++
			if !ref.streamSet {
				ref.stream, ref.streamSet = string(content), true
			}
			ref.textAsFile = ref.textAsFile || text
		case "stream_include_usage":
			ref.usages++
			if !ref.usageSet {
				ref.usage, ref.usageSet = string(content), true
			}
			ref.textAsFile = ref.textAsFile || text
		case "response_format":
			ref.formats++
			if !ref.formatSet {
				ref.format, ref.formatSet = string(content), true
			}
			ref.textAsFile = ref.textAsFile || text
		case "prompt":
			ref.promptParts++
			if !ref.promptSet {
				ref.prompt, ref.promptSet = string(content), true
			}
			ref.textAsFile = ref.textAsFile || text
		}
	}
}

// refFormBool is pydantic's reading of a form bool, written independently of
// formBool: FastAPI takes an empty field as not given (false), pydantic compares
// in ASCII case.
func refFormBool(s string) (bool, bool) {
	if s == "" {
		return false, true
	}
	switch strings.ToLower(strings.Trim(s, " \t\r\n\v\f")) {
	case "true", "1", "yes", "on", "t", "y":
		return true, true
	case "false", "0", "no", "off", "f", "n":
		return false, true
	}
	return false, false
}

// checkFormAgainstRef fails t unless Go's mime/multipart reads body with the fields
// scanForm gave f.
func checkFormAgainstRef(t *testing.T, body []byte, boundary string, f *formFields) {
	t.Helper()
	ref, err := readFormRef(body, boundary)
	if err != nil {
		t.Fatalf("scanForm took a body mime/multipart refuses: %v\nbody %q", err, body)
	}
	if ref.nameless {
		t.Fatalf("scanForm took a part mime/multipart reads without a name\nbody %q", body)
	}
	if ref.textAsFile {
		t.Fatalf("scanForm took a text field mime/multipart reads as a file\nbody %q", body)
	}
	if ref.models > 1 || ref.files > 1 || ref.streams > 1 || ref.usages > 1 || ref.formats > 1 || ref.promptParts > 1 {
		t.Fatalf("scanForm took a field given twice\nbody %q", body)
	}
	if f.parts != ref.parts {
		t.Fatalf("parts %d, mime/multipart %d\nbody %q", f.parts, ref.parts, body)
	}
	if got, ok := formSpan(body, f.model); ok != ref.modelSet || got != ref.model {
		t.Fatalf("model %q (%v), mime/multipart %q (%v)\nbody %q", got, ok, ref.model, ref.modelSet, body)
	}
	if got, ok := formSpan(body, f.responseFormat); ok != ref.formatSet || got != ref.format {
		t.Fatalf("response_format %q (%v), mime/multipart %q (%v)\nbody %q", got, ok, ref.format, ref.formatSet, body)
	}
	if f.fileBytes != ref.fileBytes {
		t.Fatalf("file of %d bytes, mime/multipart %d\nbody %q", f.fileBytes, ref.fileBytes, body)
	}
	if f.textBytes != len(ref.prompt) {
		t.Fatalf("prompt of %d bytes, mime/multipart %d\nbody %q", f.textBytes, len(ref.prompt), body)
	}
	if want, ok := refFormBool(ref.stream); !ok || f.stream != want {
		t.Fatalf("stream %v, mime/multipart reads %q\nbody %q", f.stream, ref.stream, body)
	}
	if want, ok := refFormBool(ref.usage); !ok || f.streamIncludeUsage != want {
		t.Fatalf("stream_include_usage %v, mime/multipart reads %q\nbody %q", f.streamIncludeUsage, ref.usage, body)
	}
}

func formSpan(body []byte, span [2]int) (string, bool) {
	if span[0] < 0 {
		return "", false
	}
	return string(body[span[0]:span[1]]), true
}

// crlf and lf join lines as a form body writes them.
func crlf(lines ...string) []byte { return []byte(strings.Join(lines, "\r\n")) }
func lf(lines ...string) []byte   { return []byte(strings.Join(lines, "\n")) }

// audioBytes is deterministic binary content, line endings and dashes included.
func audioBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// writerForm is a body as mime/multipart.Writer (and so most clients) writes it.
// boundary "" is the writer's random one.
func writerForm(t testing.TB, boundary string, fileFirst bool, file []byte, fields ...string) ([]byte, string) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	if boundary != "" {
		if err := w.SetBoundary(boundary); err != nil {
			t.Fatal(err)
		}
	}
	writeFile := func() {
		fw, err := w.CreateFormFile("file", "speech.wav")
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(file)
	}
	if fileFirst {
		writeFile()
	}
	for i := 0; i+1 < len(fields); i += 2 {
		if err := w.WriteField(fields[i], fields[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if !fileFirst {
		writeFile()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), w.Boundary()
}

type validFormCase struct {
	name     string
	boundary string
	body     []byte
	model    string // "" for no model part, "<empty>" for an empty one
	stream   bool
	file     int
	parts    int
}

func validFormCases(t testing.TB) []validFormCase {
	const b = "XyZ"
	// The file holds what looks like delimiters and is not: the boundary as a prefix
	// of a longer word, with one dash, after a bare LF, in the middle of a line.
	tricky := "RIFF\x00\x01\r\n--XyZX\r\n--XyZ-x\n--XyZ\na--XyZ\r\n\r\n-\r\n--Xy\r\r\n\x00"
	audio := audioBytes(70000, 1)
	const wb = "tollgate-audio-boundary"
	file1 := append(append([]byte("\r\n--"+wb+"X"), audio...), "\r\n--"+wb+"-x\n--"+wb+"\r\n\r"...)
	w1, b1 := writerForm(t, wb, true, file1, "model", "whisper-1", "language", "en",
		"prompt", "Tollgate, vLLM.", "response_format", "verbose_json", "temperature", "0.2",
		"timestamp_granularities[]", "word", "timestamp_granularities[]", "segment", "include[]", "logprobs",
		"stream", "true", "stream_include_usage", "True", "stream_continuous_usage_stats", "false", "to_language", "de")
	w2, b2 := writerForm(t, "", false, audio[:1000], "model", "openai/whisper-large-v3", "stream", "false")
	longBoundary := strings.Repeat("0123456789", 7)
	var many [][]byte
	for i := range formMaxParts - 1 {
		many = append(many, []byte("--"+b+"\r\nContent-Disposition: form-data; name=\"f"+strconv.Itoa(i)+"\"\r\n\r\nv\r\n"))
	}
	manyBody := append(bytes.Join(many, nil), crlf("--"+b, `Content-Disposition: form-data; name="model"`, "", "m", "--"+b+"--")...)
	return []validFormCase{
		{"mime/multipart writer, file first", b1, w1, "whisper-1", true, len(file1), 13},
		{"mime/multipart writer, file last", b2, w2, "openai/whisper-large-v3", false, 1000, 3},
		{"hand written", b, crlf("--"+b,
			`Content-Disposition: form-data; name="model"`, "", "whisper-1",
			"--"+b, `Content-Disposition: form-data; name="file"; filename="a.wav"`, "Content-Type: audio/wav", "", tricky,
			"--"+b+"--", ""), "whisper-1", false, len(tricky), 2},
		{"bare LF line endings", b, lf("--"+b,
			`Content-Disposition: form-data; name="model"`, "", "whisper-1",
			"--"+b, `Content-Disposition: form-data; name="stream"`, "", "1",
			"--"+b, `Content-Disposition: form-data; name="file"; filename="a.wav"`, "", "RIFF\r",
			"--"+b+"--", ""), "whisper-1", true, 5, 3},
		{"boundary with spaces and specials", "my boundary:1=(x)?", crlf("--my boundary:1=(x)?",
			`Content-Disposition: form-data; name="model"`, "", "w",
			"--my boundary:1=(x)?", `Content-Disposition: form-data; name="file"; filename="a"`, "", "--my boundary:1=(x)?x",
			"--my boundary:1=(x)?--"), "w", false, 21, 2},
		{"70-character boundary", longBoundary, crlf("--"+longBoundary,
			`Content-Disposition: form-data; name=model`, "", "w", "--"+longBoundary+"--"), "w", false, -1, 1},
		{"parameters reordered, names in any case", b, crlf("--"+b,
			`CONTENT-DISPOSITION: FORM-DATA; filename="a.wav";NAME="file"`, "", "abc",
			"--"+b, "content-disposition:form-data;name=model", "", "w",
			"--"+b, "Content-Disposition: Form-Data ; Name = \"stream\" ; ", "", "YES",
			"--"+b+"--"), "w", true, 3, 3},
		{"filename with escaped quotes and backslashes", b, crlf("--"+b,
			`Content-Disposition: form-data; name="file"; filename="say \"hi\"; C:\\dir\\a.wav"`, "", "abc",
			"--"+b, `Content-Disposition: form-data; filename="x.wav\\"; name="notes"; x-y="\a"`, "", "n",
			"--"+b, `Content-Disposition: form-data; x-y="\a"; name="model"`, "", "w",
			"--"+b+"--"), "w", false, 3, 3},
		{"unicode names and filename", b, crlf("--"+b,
			`Content-Disposition: form-data; name="modèle"`, "", "x",
			"--"+b, `Content-Disposition: form-data; name="模型"`, "", "y",
			"--"+b, `Content-Disposition: form-data; name="file"; filename="頭.wav"`, "", "ab",
			"--"+b, `Content-Disposition: form-data; name="model"`, "", "ü-1",
			"--"+b+"--"), "ü-1", false, 2, 4},
		{"empty parts", b, crlf("--"+b,
			`Content-Disposition: form-data; name="model"`, "", "",
			"--"+b, `Content-Disposition: form-data; name="prompt"`, "", "",
			"--"+b, `Content-Disposition: form-data; name="stream"`, "", "",
			"--"+b, `Content-Disposition: form-data; name="file"; filename="a.wav"`, "", "",
			"--"+b+"--"), "<empty>", false, 0, 4},
		{"part ending at its blank line", b, crlf("--"+b,
			`Content-Disposition: form-data; name="file"; filename="a.wav"`, "",
			"--"+b, `Content-Disposition: form-data; name="model"`, "", "w",
			"--"+b+"--"), "w", false, 0, 2},
		{"preamble and epilogue", b, crlf("This is a preamble.", "--"+b+"x", " --"+b, "--"+b+"--x", "--"+b+" x",
			"--"+b, `Content-Disposition: form-data; name="model"`, "", "w",
			"--"+b+"--", "--"+b, "epilogue\x00"), "w", false, -1, 1},
		{"preamble ending in bare LF", b, []byte("preamble\n--" + b + "\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nw\r\n--" + b + "--\r\n"),
			"w", false, -1, 1},
		{"transport padding", b, crlf("--"+b+" \t",
			`Content-Disposition: form-data; name="model"`, "", "w",
			"--"+b+"\t", `Content-Disposition: form-data; name="file"`, "", "a",
			"--"+b+"-- \t", "x"), "w", false, 1, 2},
		{"close delimiter at the end without a line break", b, crlf("--"+b,
			`Content-Disposition: form-data; name="model"`, "", "w", "--"+b+"--  "), "w", false, -1, 1},
		{"other headers", b, crlf("--"+b,
			"Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable",
			`Content-Disposition: form-data; name="model"`, "X-Note:", "", "w=3D",
			"--"+b, `Content-Disposition: form-data; name="response_format"`, "Content-Transfer-Encoding: 8bit", "", "srt",
			"--"+b+"--"), "w=3D", false, -1, 2},
		{"stream forms", b, crlf("--"+b,
			`Content-Disposition: form-data; name="stream"`, "", " On\t",
			"--"+b, `Content-Disposition: form-data; name="stream_include_usage"`, "", "0",
			"--"+b+"--"), "", true, -1, 2},
		{"names as tokens, a trailing semicolon", b, crlf("--"+b,
			`Content-Disposition: form-data; name=model;`, "", "w",
			"--"+b, `Content-Disposition: form-data; name=prompt`, "", "say it",
			"--"+b+"--"), "w", false, -1, 2},
		{"percent and backslash in other names", b, crlf("--"+b,
			`Content-Disposition: form-data; name="a%20b"`, "", "x",
			"--"+b, `Content-Disposition: form-data; name="mo\\del2"`, "", "y",
			"--"+b, `Content-Disposition: form-data; name="model"`, "", "w",
			"--"+b+"--"), "w", false, -1, 3},
		{"1000 parts", b, manyBody, "m", false, -1, formMaxParts},
	}
}

func TestScanFormValid(t *testing.T) {
	for _, c := range validFormCases(t) {
		t.Run(c.name, func(t *testing.T) {
			var f formFields
			err := scanForm(c.body, []byte(c.boundary), &f)
			if err != nil {
				t.Fatalf("scanForm: %v", err)
			}
			checkFormAgainstRef(t, c.body, c.boundary, &f)
			model, ok := formSpan(c.body, f.model)
			switch {
			case c.model == "" && ok, c.model == "<empty>" && model != "", c.model != "" && c.model != "<empty>" && model != c.model:
				t.Fatalf("model %q (%v), want %q", model, ok, c.model)
			}
			if f.stream != c.stream || f.fileBytes != c.file || f.parts != c.parts {
				t.Fatalf("stream %v file %d parts %d, want %v %d %d", f.stream, f.fileBytes, f.parts, c.stream, c.file, c.parts)
			}
		})
	}
}

// TestScanFormAllFields checks each field's value in one body the OpenAI SDKs write.
func TestScanFormAllFields(t *testing.T) {
	body, boundary := writerForm(t, "", true, []byte("RIFF...."), "model", "whisper-1", "prompt", "Hello, world",
		"response_format", "verbose_json", "stream", "true", "stream_include_usage", "y")
	var f formFields
	if err := scanForm(body, []byte(boundary), &f); err != nil {
		t.Fatal(err)
	}
	format, _ := formSpan(body, f.responseFormat)
	model, _ := formSpan(body, f.model)
	if model != "whisper-1" || format != "verbose_json" || f.textBytes != 12 || f.fileBytes != 8 ||
		!f.stream || !f.streamIncludeUsage || f.parts != 6 {
		t.Fatalf("read %+v (model %q, response_format %q)", f, model, format)
	}
	var none formFields
	body, boundary = writerForm(t, "", false, nil, "language", "en")
	if err := scanForm(body, []byte(boundary), &none); err != nil {
		t.Fatal(err)
	}
	if none.model != [2]int{-1, -1} || none.responseFormat != [2]int{-1, -1} || none.fileBytes != 0 || none.textBytes != 0 || none.stream {
		t.Fatalf("read %+v from a body without those fields", none)
	}
}

func TestScanFormInvalid(t *testing.T) {
	const b = "XyZ"
	part := func(disposition, value string) string {
		return "--" + b + "\r\n" + disposition + "\r\n\r\n" + value + "\r\n"
	}
	model := part(`Content-Disposition: form-data; name="model"`, "w")
	end := "--" + b + "--\r\n"
	var many strings.Builder
	for range formMaxParts + 1 {
		many.WriteString(part(`Content-Disposition: form-data; name="x"`, ""))
	}
	cases := []struct {
		name     string
		boundary string
		body     string
		err      error
	}{
		{"empty boundary", "", model + end, errFormBoundary},
		{"boundary over 70 characters", strings.Repeat("a", 71), model + end, errFormBoundary},
		{"boundary with a character RFC 2046 bars", "a!b", model + end, errFormBoundary},
		{"empty body", b, "", errFormNoDelimiter},
		{"no delimiter", b, "hello\r\n--XyZX\r\n-- XyZ\r\n", errFormNoDelimiter},
		{"delimiter mid-line only", b, "x--XyZ\r\n\r\n", errFormNoDelimiter},
		{"close delimiter alone", b, "--XyZ--\r\n", errFormEmpty},
		{"close delimiter alone after a preamble", b, "preamble\r\n--XyZ--", errFormEmpty},
		{"no close delimiter", b, model, errFormTruncated},
		{"cut in the content", b, model[:len(model)-3], errFormTruncated},
		{"cut in the headers", b, "--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n", errFormTruncated},
		{"cut after a delimiter", b, model + "--XyZ", errFormTruncated},
		{"cut after a delimiter and padding", b, model + "--XyZ  ", errFormTruncated},
		{"cut after a delimiter's CR", b, model + "--XyZ\r", errFormTruncated},
		{"cut after one dash", b, model + "--XyZ-", errFormTruncated},
		{"text after the close delimiter", b, model + "--XyZ--x\r\n", errFormBoundaryLine},
		{"close delimiter ending in bare LF", b, model + "--XyZ--\n", errFormBoundaryLine},
		{"text after a delimiter", b, model + "--XyZ x\r\n" + model + end, errFormBoundaryLine},
		{"delimiter ending in bare LF in a CRLF body", b, model + "--XyZ\n" + model + end, errFormBoundaryLine},
		{"header line ending in bare LF", b, "--XyZ\r\nContent-Disposition: form-data; name=\"model\"\n\r\nw\r\n" + end, errFormHeader},
		{"CR in an LF body's headers", b, "--XyZ\nContent-Disposition: form-data; name=\"model\"\r\n\nw\n--XyZ--\n", errFormHeader},
		{"folded header", b, "--XyZ\r\nContent-Disposition: form-data;\r\n name=\"model\"\r\n\r\nw\r\n" + end, errFormHeader},
		{"header without a colon", b, part("Content-Disposition form-data; name=model", "w") + end, errFormHeader},
		{"space before the colon", b, part("Content-Disposition : form-data; name=model", "w") + end, errFormHeader},
		{"control character in a header", b, part("Content-Disposition: form-data; name=\"mo\x00del\"", "w") + end, errFormHeader},
		{"delimiter instead of a blank line", b, "--XyZ\r\nContent-Disposition: form-data; name=model\r\n" + end, errFormHeader},
		{"headers over 16 KiB", b, part("X-Pad: "+strings.Repeat("a", formMaxHeaderBytes)+"\r\nContent-Disposition: form-data; name=model", "w") + end, errFormHeaderSize},
		{"more than 1000 parts", b, many.String() + end, errFormParts},
		{"no Content-Disposition", b, part("Content-Type: text/plain", "w") + end, errFormNoName},
		{"no headers", b, "--XyZ\r\n\r\nw\r\n" + end, errFormNoName},
		{"attachment", b, part(`Content-Disposition: attachment; name="model"`, "w") + end, errFormNoName},
		{"no name", b, part(`Content-Disposition: form-data; filename="a.wav"`, "w") + end, errFormNoName},
		{"empty name", b, part(`Content-Disposition: form-data; name=""`, "w") + end, errFormNoName},
		{"Content-Disposition twice", b, part("Content-Disposition: form-data; name=\"x\"\r\nContent-Disposition: form-data; name=\"model\"", "w") + end, errFormDisposition},
		{"name twice", b, part(`Content-Disposition: form-data; name="x"; NAME="model"`, "w") + end, errFormDisposition},
		{"RFC 2231 name", b, part(`Content-Disposition: form-data; name="x"; name*=utf-8''model`, "w") + end, errFormDisposition},
		{"RFC 2231 continued name", b, part(`Content-Disposition: form-data; name*0="mo"; name*1="del"`, "w") + end, errFormDisposition},
		{"parameter without a value", b, part(`Content-Disposition: form-data; name="model"; x`, "w") + end, errFormDisposition},
		{"unterminated quote", b, part(`Content-Disposition: form-data; name="model`, "w") + end, errFormDisposition},
		{"escaped closing quote", b, part(`Content-Disposition: form-data; name="model\"`, "w") + end, errFormDisposition},
		{"two semicolons", b, part(`Content-Disposition: form-data; name="model";;`, "w") + end, errFormDisposition},
		{"text after the type", b, part(`Content-Disposition: form-data x; name="model"`, "w") + end, errFormDisposition},
		{"non-ASCII space after a token", b, part("Content-Disposition: form-data; name=model\u00a0", "w") + end, errFormDisposition},
		{"nine parameters", b, part(`Content-Disposition: form-data; name="m"; a=1; b=1; c=1; d=1; e=1; f=1; g=1; h=1`, "w") + end, errFormDisposition},
		{"backslash-escaped name", b, part(`Content-Disposition: form-data; name="mo\del"`, "w") + end, errFormEscapedName},
		{"percent-encoded name", b, part(`Content-Disposition: form-data; name="str%65am"`, "true") + end, errFormEscapedName},
		{"model as a file", b, part(`Content-Disposition: form-data; name="model"; filename="m.txt"`, "w") + end, errFormFieldFile[formModel]},
		{"stream as an RFC 2231 file", b, part(`Content-Disposition: form-data; name="stream"; filename*=utf-8''s`, "1") + end, errFormFieldFile[formStream]},
		{"model twice", b, model + model + end, errFormModelTwice},
		{"file twice", b, part(`Content-Disposition: form-data; name="file"; filename="a"`, "1") + part(`Content-Disposition: form-data; name=file; filename="b"`, "22") + end, errFormFileTwice},
		{"stream twice", b, part(`Content-Disposition: form-data; name="stream"`, "true") + part(`Content-Disposition: form-data; name="stream"`, "false") + end, errFormStreamTwice},
		{"stream_include_usage twice", b, part(`Content-Disposition: form-data; name="stream_include_usage"`, "1") + part(`Content-Disposition: form-data; name="stream_include_usage"`, "1") + end, errFormStreamUsageTwice},
		{"response_format twice", b, part(`Content-Disposition: form-data; name="response_format"`, "json") + part(`Content-Disposition: form-data; name="response_format"`, "text") + end, errFormFormatTwice},
		{"prompt twice", b, part(`Content-Disposition: form-data; name="prompt"`, "a") + part(`Content-Disposition: form-data; name="prompt"`, "b") + end, errFormPromptTwice},
		{"model over 256 bytes", b, part(`Content-Disposition: form-data; name="model"`, strings.Repeat("m", 257)) + end, errFormModel},
		{"model with a line break", b, part(`Content-Disposition: form-data; name="model"`, "a\r\nb") + end, errFormModel},
		{"model not UTF-8", b, part(`Content-Disposition: form-data; name="model"`, "a\xffb") + end, errFormModel},
		{"stream neither true nor false", b, part(`Content-Disposition: form-data; name="stream"`, "maybe") + end, errFormStream},
		{"stream of spaces", b, part(`Content-Disposition: form-data; name="stream"`, "  ") + end, errFormStream},
		{"stream_include_usage of 2", b, part(`Content-Disposition: form-data; name="stream_include_usage"`, "2") + end, errFormStreamUsage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var f formFields
			if err := scanForm([]byte(c.body), []byte(c.boundary), &f); err != c.err {
				t.Fatalf("err %v, want %v", err, c.err)
			}
		})
	}
}

// Every error is a sentinel whose message is for the client: no body bytes, no
// formatting verbs.
func TestScanFormErrorsQuoteNothing(t *testing.T) {
	body := []byte("--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nsecret-model-name\xff\r\n--b--")
	var f formFields
	err := scanForm(body, []byte("b"), &f)
	if err != errFormModel || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "%") {
		t.Fatalf("err %v", err)
	}
}

func TestFormBoundary(t *testing.T) {
	cases := []struct {
		name, ct, want string
	}{
		{"token", "multipart/form-data; boundary=abc123", "abc123"},
		{"what mime/multipart writes", "multipart/form-data; boundary=" + multipart.NewWriter(io.Discard).Boundary(), ""},
		{"quoted", `multipart/form-data; boundary="abc 1:2"`, "abc 1:2"},
		{"any case, parameters reordered", "Multipart/Form-Data; charset=utf-8; BOUNDARY=----WebKitFormBoundary7MA4YWxkTrZu0gW", "----WebKitFormBoundary7MA4YWxkTrZu0gW"},
		{"whitespace", " multipart/form-data ;\tboundary = \"x\" ; charset=\"utf-8\" ", "x"},
		{"trailing semicolon", "multipart/form-data; boundary=x;", "x"},
		{"70 characters", "multipart/form-data; boundary=" + strings.Repeat("b", 70), strings.Repeat("b", 70)},
		{"not form-data", "multipart/mixed; boundary=x", "-"},
		{"JSON", "application/json", "-"},
		{"no boundary", "multipart/form-data", "-"},
		{"no boundary, other parameters", "multipart/form-data; charset=utf-8", "-"},
		{"empty boundary", `multipart/form-data; boundary=""`, "-"},
		{"71 characters", "multipart/form-data; boundary=" + strings.Repeat("b", 71), "-"},
		{"ending in a space", `multipart/form-data; boundary="ab "`, "-"},
		{"a character RFC 2046 bars", "multipart/form-data; boundary=a!b", "-"},
		{"escapes", `multipart/form-data; boundary="a\:b"`, "-"},
		{"boundary twice", "multipart/form-data; boundary=a; boundary=a", "-"},
		{"another parameter twice", "multipart/form-data; boundary=a; x=1; X=2", "-"},
		{"nine parameters", "multipart/form-data; boundary=a; b=1; c=1; d=1; e=1; f=1; g=1; h=1; i=1", "-"},
		{"RFC 2231 boundary", "multipart/form-data; boundary=a; boundary*=utf-8''b", "-"},
		{"no semicolon", "multipart/form-data boundary=a", "-"},
		{"spaces around the slash", "multipart / form-data; boundary=a", "-"},
		{"unterminated quote", `multipart/form-data; boundary="abc`, "-"},
		{"parameter without a value", "multipart/form-data; boundary=a; x", "-"},
		{"empty", "", "-"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ct := []byte(c.ct)
			got, ok := formBoundary(ct)
			if c.want == "-" {
				if ok {
					t.Fatalf("took boundary %q", got)
				}
				return
			}
			if !ok {
				t.Fatal("refused")
			}
			if c.want != "" && string(got) != c.want {
				t.Fatalf("boundary %q, want %q", got, c.want)
			}
			inside := false
			for i := range ct {
				inside = inside || &ct[i] == &got[0]
			}
			if !inside {
				t.Fatal("boundary is not a sub-slice of the header value")
			}
			typ, params, err := mime.ParseMediaType(c.ct)
			if err != nil || typ != "multipart/form-data" || params["boundary"] != string(got) {
				t.Fatalf("mime reads %q %q %v", typ, params["boundary"], err)
			}
		})
	}
}

func TestSpliceFormModel(t *testing.T) {
	file := audioBytes(5000, 2)
	body, boundary := writerForm(t, "", true, file, "model", "chat-audio", "stream", "true")
	var f formFields
	if err := scanForm(body, []byte(boundary), &f); err != nil {
		t.Fatal(err)
	}
	out := spliceFormModel([]byte("keep:"), body, f.model, "openai/whisper-large-v3")
	if !bytes.HasPrefix(out, []byte("keep:")) {
		t.Fatal("dst's bytes lost")
	}
	out = out[len("keep:"):]
	var g formFields
	if err := scanForm(out, []byte(boundary), &g); err != nil {
		t.Fatal(err)
	}
	checkFormAgainstRef(t, out, boundary, &g)
	if m, _ := formSpan(out, g.model); m != "openai/whisper-large-v3" || g.fileBytes != len(file) || !g.stream || g.parts != 3 {
		t.Fatalf("spliced body reads %+v, model %q", g, m)
	}
	// Without a model part the body goes as it is.
	if out := spliceFormModel(nil, body, [2]int{-1, -1}, "x"); !bytes.Equal(out, body) {
		t.Fatal("body without a model span changed")
	}
	// The headers before the value, and the part after, are untouched.
	r := multipart.NewReader(bytes.NewReader(out), boundary)
	for {
		p, err := r.NextPart()
		if err != nil {
			break
		}
		if p.FormName() == "model" && p.Header.Get("Content-Disposition") != `form-data; name="model"` {
			t.Fatalf("model part's header %q", p.Header.Get("Content-Disposition"))
		}
		if p.FormName() == "file" {
			got, _ := io.ReadAll(p)
			if !bytes.Equal(got, file) {
				t.Fatal("file part changed")
			}
		}
	}
}

// spliceFormModel splices as providers.appendFormBody does for the upstream: body
// appended to dst with the model part's value (span, from scanForm) replaced by model; with no span ({-1,-1}) body goes as it is. model must
// not hold a line break (a backend's configured name does not).
func spliceFormModel(dst, body []byte, span [2]int, model string) []byte {
	if span[0] < 0 {
		return append(dst, body...)
	}
	return append(append(append(dst, body[:span[0]]...), model...), body[span[1]:]...)
}
