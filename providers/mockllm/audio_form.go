package mockllm

import (
	"bytes"
	"encoding/binary"
)

// The audio routes' bodies are multipart/form-data, read here without mime/multipart:
// the body is already in memory, so each part is a slice of it, and the route
// allocates nothing, as the JSON routes do not.

// Starlette's MultiPartParser limits (starlette/formparsers.py), which vLLM's FastAPI
// app runs with: a body beyond them is refused as unparsable.
const (
	maxFormFields   = 1000
	maxFormFiles    = 1000
	maxFormPartSize = 1 << 20 // a field that is not a file
)

// formPart is one part of a multipart/form-data body: its field name, whether its
// Content-Disposition names a filename (Starlette then hands it over as an
// UploadFile, else as a str), and its data. name and data are slices of the body.
type formPart struct {
	name, data []byte
	file       bool
}

// formReader walks the parts of a multipart/form-data body. delim is "\r\n--" and the
// boundary.
type formReader struct {
	body  []byte
	delim []byte
	off   int
	done  bool
	bad   bool
	files int
	parts int
}

// reset starts reading body; it reports false when the body does not open with the
// boundary (CR LF pairs before it aside, as python-multipart skips them).
func (r *formReader) reset(body, delim []byte) bool {
	*r = formReader{body: body, delim: delim}
	i := 0
	for i+1 < len(body) && body[i] == '\r' && body[i+1] == '\n' {
		i += 2
	}
	if !bytes.HasPrefix(body[i:], delim[2:]) {
		r.bad = true
		return false
	}
	r.off = i + len(delim) - 2
	r.afterDelim()
	return !r.bad
}

// afterDelim reads what follows a delimiter: "--" ends the body (an epilogue is
// ignored), CR LF opens a part; optional white space before either is skipped.
func (r *formReader) afterDelim() {
	b := r.body[r.off:]
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	switch {
	case bytes.HasPrefix(b[i:], strDashes):
		r.done = true
	case bytes.HasPrefix(b[i:], strCRLF):
		r.off += i + 2
	default:
		r.bad = true
	}
}

var (
	strDashes   = []byte("--")
	strCRLF     = []byte("\r\n")
	strCRLFCRLF = []byte("\r\n\r\n")
	strFormData = []byte("multipart/form-data")
	strURLForm  = []byte("application/x-www-form-urlencoded")
)

// next returns the next part; ok is false at the end of the body or at the first
// malformed byte, which bad then tells.
func (r *formReader) next() (p formPart, ok bool) {
	if r.done || r.bad {
		return p, false
	}
	b := r.body[r.off:]
	h := bytes.Index(b, strCRLFCRLF)
	if h < 0 {
		r.bad = true
		return p, false
	}
	named := false
	for line := range bytes.SplitSeq(b[:h], strCRLF) {
		k, v, found := bytes.Cut(line, []byte(":"))
		if !found || !bytes.EqualFold(bytes.TrimSpace(k), strContentDisposition) {
			continue
		}
		p.name, p.file, named = parseDisposition(v)
	}
	data := b[h+4:]
	end := bytes.Index(data, r.delim)
	if !named || end < 0 {
		// python-multipart refuses a part without a name, and a body that ends
		// inside a part.
		r.bad = true
		return p, false
	}
	p.data = data[:end]
	r.parts++
	if p.file {
		r.files++
	}
	if r.parts-r.files > maxFormFields || r.files > maxFormFiles || !p.file && len(p.data) > maxFormPartSize {
		r.bad = true
		return p, false
	}
	r.off += h + 4 + end + len(r.delim)
	r.afterDelim()
	return p, !r.bad
}

var strContentDisposition = []byte("content-disposition")

// parseDisposition reads a part's Content-Disposition value, form-data; name="file";
// filename="a.wav": the name (as sent, quotes removed; an escaped name is kept
// escaped, so it names no field the routes read), and whether a filename (or
// filename*) parameter is present. ok is false without a name.
func parseDisposition(v []byte) (name []byte, file, ok bool) {
	_, v, _ = bytes.Cut(v, []byte(";"))
	for len(v) > 0 {
		v = bytes.TrimLeft(v, " \t;")
		eq := bytes.IndexByte(v, '=')
		if eq < 0 {
			break
		}
		key := bytes.TrimSpace(v[:eq])
		v = bytes.TrimLeft(v[eq+1:], " \t")
		var val []byte
		if len(v) > 0 && v[0] == '"' {
			i := 1
			for i < len(v) && v[i] != '"' {
				if v[i] == '\\' {
					i++
				}
				i++
			}
			val = v[1:min(i, len(v))]
			v = v[min(i+1, len(v)):]
		} else {
			i := bytes.IndexByte(v, ';')
			if i < 0 {
				i = len(v)
			}
			val = bytes.TrimSpace(v[:i])
			v = v[i:]
		}
		switch {
		case bytes.EqualFold(key, []byte("name")):
			name, ok = val, true
		case bytes.EqualFold(key, []byte("filename")), bytes.EqualFold(key, []byte("filename*")):
			file = true
		}
	}
	return name, file, ok
}

// assumedByteRate is the rate at which the size of an audio file that is not WAV
// gives its duration: 16,000 bytes a second, a 128 kbit/s MP3.
const assumedByteRate = 16000

// audioDuration is how long the audio in f lasts, in seconds: for WAV (RIFF, WAVE),
// its data chunk's frames over its fmt chunk's sample rate, else f's size at
// assumedByteRate. ok is false for what librosa cannot read: an empty file, or a RIFF
// file that is not WAVE or lacks a usable fmt or data chunk.
func audioDuration(f []byte) (float64, bool) {
	if len(f) == 0 {
		return 0, false
	}
	if len(f) < 4 || string(f[:4]) != "RIFF" {
		return float64(len(f)) / assumedByteRate, true
	}
	if len(f) < 12 || string(f[8:12]) != "WAVE" {
		return 0, false
	}
	var rate, align uint32
	for b := f[12:]; len(b) >= 8; {
		id, size := b[:4], binary.LittleEndian.Uint32(b[4:8])
		b = b[8:]
		switch string(id) {
		case "fmt ":
			if size < 16 || len(b) < 16 {
				return 0, false
			}
			rate = binary.LittleEndian.Uint32(b[4:8])
			align = uint32(binary.LittleEndian.Uint16(b[12:14]))
		case "data":
			if rate == 0 || align == 0 {
				return 0, false
			}
			// A streamed WAV leaves the size unset (0 or 0xFFFFFFFF): the data runs
			// to the end of the file.
			n := uint64(size)
			if n == 0 || n > uint64(len(b)) {
				n = uint64(len(b))
			}
			return float64(n/uint64(align)) / float64(rate), true
		}
		if uint64(size) >= uint64(len(b)) {
			break
		}
		b = b[size+size&1:]
	}
	return 0, false
}
