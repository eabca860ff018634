package gateway

import (
	"bufio"
	"errors"
	"mime"
	"testing"
)

// formErrors are scanForm's errors: it returns nothing else.
var formErrors = []error{errFormBoundary, errFormNoDelimiter, errFormEmpty, errFormTruncated,
	errFormBoundaryLine, errFormHeader, errFormHeaderSize, errFormParts, errFormNoName,
	errFormDisposition, errFormEscapedName, errFormFieldFile[formModel], errFormFieldFile[formStream],
	errFormFieldFile[formStreamUsage], errFormFieldFile[formFormat], errFormFieldFile[formPrompt],
	errFormModel, errFormModelTwice,
	errFormFileTwice, errFormStream, errFormStreamTwice, errFormStreamUsage,
	errFormStreamUsageTwice, errFormFormatTwice, errFormPromptTwice}

// FuzzScanForm holds scanForm to Go's mime/multipart: whatever body it takes,
// mime/multipart reads with the same boundary as the same parts, every one named,
// none of the read fields given twice or as a file, with the same model,
// response_format, prompt size, stream values and file size. The one documented
// difference: Go's reader reads the preamble and boundary lines through a 4 KiB
// buffer and fails (bufio.ErrBufferFull) on a longer line, a limit of its
// implementation, not of the form; scanForm reads any length there. scanForm is
// stricter than Go elsewhere (bare LF header lines in a CRLF body, folded headers,
// repeated parameters, a part over 16 KiB of headers), which the test allows.
func FuzzScanForm(f *testing.F) {
	for _, c := range validFormCases(f) {
		if len(c.body) < 4096 {
			f.Add(c.boundary, c.body)
		}
	}
	f.Fuzz(func(t *testing.T, boundary string, body []byte) {
		if !validBoundary([]byte(boundary)) {
			var fl formFields
			if err := scanForm(body, []byte(boundary), &fl); err != errFormBoundary {
				t.Fatalf("boundary %q taken: %v", boundary, err)
			}
			return
		}
		var fl formFields
		err := scanForm(body, []byte(boundary), &fl)
		if err != nil {
			for _, e := range formErrors {
				if err == e {
					return
				}
			}
			t.Fatalf("unknown error %v", err)
		}
		if fl.model[0] > fl.model[1] || fl.model[1] > len(body) || fl.responseFormat[0] > fl.responseFormat[1] ||
			fl.responseFormat[1] > len(body) || fl.fileBytes > len(body) || fl.textBytes > len(body) || fl.parts < 1 {
			t.Fatalf("fields out of the body: %+v", fl)
		}
		if _, err := readFormRef(body, boundary); errors.Is(err, bufio.ErrBufferFull) {
			return
		}
		checkFormAgainstRef(t, body, boundary, &fl)
		if fl.model[0] >= 0 {
			spliced := spliceFormModel(nil, body, fl.model, string(body[fl.model[0]:fl.model[1]]))
			if string(spliced) != string(body) {
				t.Fatal("splicing the same model changed the body")
			}
		}
	})
}

// FuzzFormBoundary holds formBoundary to Go's mime.ParseMediaType: a boundary it
// takes is the one Go reads from the same value, and one RFC 2046 allows.
func FuzzFormBoundary(f *testing.F) {
	for _, s := range []string{"multipart/form-data; boundary=abc", `multipart/form-data; boundary="a b"`,
		"Multipart/Form-Data; charset=utf-8; BOUNDARY=x", `multipart/form-data; boundary="a\:b"`,
		"multipart/form-data; boundary=a; boundary=b", " multipart/form-data ;\tboundary = x ;",
		"multipart/form-data; boundary*=utf-8''x", "multipart/mixed; boundary=x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, ct []byte) {
		b, ok := formBoundary(ct)
		if !ok {
			return
		}
		if !validBoundary(b) {
			t.Fatalf("took invalid boundary %q", b)
		}
		typ, params, err := mime.ParseMediaType(string(ct))
		if err != nil || typ != "multipart/form-data" || params["boundary"] != string(b) {
			t.Fatalf("took %q from %q; mime reads %q %q %v", b, ct, typ, params["boundary"], err)
		}
	})
}
