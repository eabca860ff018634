package mockllm

import (
	"bytes"
	"testing"
)

// FuzzAudioForm feeds the multipart reader arbitrary bodies: it must not panic, and
// every part it returns lies inside the body.
func FuzzAudioForm(f *testing.F) {
	ct, body := audioForm(WAV(0.01, 8000, 1, 8), "model", "mock-1", "stream", "true")
	boundary := ct[len("multipart/form-data; boundary="):]
	f.Add([]byte(boundary), body)
	f.Add([]byte("b"), []byte("--b\r\nContent-Disposition: form-data; name=\"a\\\"b\"; filename=x\r\n\r\nv\r\n--b--"))
	f.Add([]byte("b"), []byte("\r\n--b  \r\ncontent-disposition: form-data;name=file;filename*=UTF-8''a.wav\r\n\r\n\r\n--b--\r\n"))
	f.Add([]byte("b"), []byte("--b\r\n\r\n\r\n--b--"))
	f.Fuzz(func(t *testing.T, boundary, body []byte) {
		delim := append([]byte("\r\n--"), boundary...)
		var r formReader
		r.reset(body, delim)
		for n := 0; ; n++ {
			p, ok := r.next()
			if !ok {
				break
			}
			if n > len(body) {
				t.Fatalf("more parts than bytes")
			}
			if len(p.data) > 0 && !within(body, p.data) || !bytes.Contains(body, p.name) {
				t.Fatalf("part %q=%q outside the body", p.name, p.data)
			}
		}
	})
}

// within reports whether s is a slice of b: s begins cap(b)-cap(s) bytes into b.
func within(b, s []byte) bool {
	i := cap(b) - cap(s)
	return i >= 0 && i+len(s) <= len(b) && bytes.Equal(b[i:i+len(s)], s)
}

// FuzzAudioDuration reads arbitrary files as audio: no panic, and a duration that is
// finite and not negative.
func FuzzAudioDuration(f *testing.F) {
	f.Add(WAV(0.5, 16000, 1, 16))
	f.Add([]byte("RIFF\x00\x00\x00\x00WAVEdata\xff\xff\xff\xff"))
	f.Add([]byte("RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x40\x1f\x00\x00\x01\x00\x08\x00data\xff\xff\xff\xffxyz"))
	f.Add([]byte("ID3 an mp3"))
	f.Fuzz(func(t *testing.T, file []byte) {
		d, ok := audioDuration(file)
		if ok && (d < 0 || d != d || d > 1e12) {
			t.Fatalf("duration %v", d)
		}
	})
}
