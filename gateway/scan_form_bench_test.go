//go:build !race

package gateway

import "testing"

// benchForm is an audio request as the OpenAI SDKs send it: a file of size bytes
// (random, so that CR and LF bytes turn up as in real audio) and six text fields.
func benchForm(b testing.TB, size int) ([]byte, []byte) {
	body, boundary := writerForm(b, "", true, audioBytes(size, 3), "model", "whisper-1", "language", "en",
		"prompt", "Tollgate, vLLM, Whisper.", "response_format", "verbose_json", "temperature", "0",
		"stream", "true")
	return body, []byte(boundary)
}

func benchScanForm(b *testing.B, size int) {
	body, boundary := benchForm(b, size)
	var f formFields
	if err := scanForm(body, boundary, &f); err != nil || f.fileBytes != size {
		b.Fatalf("scan: %v, file %d", err, f.fileBytes)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		scanForm(body, boundary, &f)
	}
}

// BenchmarkScanFormLargeFile is a 1 MiB file part and six text parts.
func BenchmarkScanFormLargeFile(b *testing.B) { benchScanForm(b, 1<<20) }

// BenchmarkScanFormSmall is a short clip's body (2 KiB of audio).
func BenchmarkScanFormSmall(b *testing.B) { benchScanForm(b, 2<<10) }

func BenchmarkFormBoundary(b *testing.B) {
	ct := []byte("multipart/form-data; boundary=b7e0c2d6f1a34e5f9c8d7b6a5f4e3d2c1b0a99887766554433221100ffeeddcc")
	b.ReportAllocs()
	for b.Loop() {
		formBoundary(ct)
	}
}

// TestScanFormAllocs pins the scan, the boundary's parse and the model's splice
// (into a buffer large enough) to no allocations.
func TestScanFormAllocs(t *testing.T) {
	ct := []byte("multipart/form-data; boundary=x")
	for _, size := range []int{0, 2 << 10, 1 << 20} {
		body, boundary := benchForm(t, size)
		var f formFields
		if n := allocsPerRun(20, func() {
			if err := scanForm(body, boundary, &f); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Fatalf("%.1f allocations per scan of a %d-byte file, want 0", n, size)
		}
		dst := make([]byte, 0, len(body)+64)
		if n := allocsPerRun(20, func() { dst = spliceFormModel(dst[:0], body, f.model, "openai/whisper-large-v3") }); n != 0 {
			t.Fatalf("%.1f allocations per splice, want 0", n)
		}
	}
	if n := allocsPerRun(20, func() { formBoundary(ct) }); n != 0 {
		t.Fatalf("%.1f allocations per boundary parse, want 0", n)
	}
}
