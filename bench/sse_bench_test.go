package main

import (
	"bufio"
	"strings"
	"testing"
	"time"
)

var benchStream = strings.Repeat(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"word "}}]}`+"\n\n", 64) +
	"data: [DONE]\n\n"

var (
	errorEventBytes = []byte(errorEvent)
	completionBytes = []byte(`{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"alpha"}}]}`)
	// rerankAnswerBytes is a rerank answer of the scenario's size: three results, each
	// with its document's text.
	rerankAnswerBytes = []byte(rerankAnswer)
	// messageAnswerBytes is a Messages API answer of the scenario's size (16 tokens).
	messageAnswerBytes = []byte(messageAnswer)
)

// BenchmarkSSEReader is the client's per-event cost while it times chunks:
// it must stay far below the inter-chunk gaps it measures.
func BenchmarkSSEReader(b *testing.B) {
	sr := strings.NewReader(benchStream)
	br := bufio.NewReaderSize(sr, 64<<10)
	s := sseReader{r: br}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchStream)))
	for b.Loop() {
		sr.Reset(benchStream)
		br.Reset(sr)
		for {
			d, err := s.next()
			if err != nil {
				b.Fatal(err)
			}
			if string(d) == "[DONE]" {
				break
			}
			if isErrorEvent(d) || !hasContent(d) {
				b.Fatal("no content")
			}
		}
	}
}

// BenchmarkAnswerCheck is the check of every non-streaming answer: one walk
// over the completion's members.
func BenchmarkAnswerCheck(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(completionBytes)))
	for b.Loop() {
		if !hasMember(completionBytes, "choices") {
			b.Fatal("no choices")
		}
	}
}

// BenchmarkRerankAnswerCheck is the check of every rerank answer: its members
// walked, the results' documents skipped over.
func BenchmarkRerankAnswerCheck(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(rerankAnswerBytes)))
	for b.Loop() {
		if !hasMember(rerankAnswerBytes, answerMember(kindRerank)) {
			b.Fatal("no results")
		}
	}
}

// BenchmarkMessagesAnswerCheck is the check of every Messages API answer: its
// members walked, "type" compared and "usage" walked for output_tokens.
func BenchmarkMessagesAnswerCheck(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(messageAnswerBytes)))
	for b.Loop() {
		if !isAnswer(kindMessages, messageAnswerBytes) {
			b.Fatal("no message")
		}
	}
}

func BenchmarkRecord(b *testing.B) {
	r := &recorder{st: newRunStats()}
	o := outcome{measured: true, lat: 123456, lag: 789, ttft: 5000, gaps: []time.Duration{1000, 1100, 900}}
	b.ReportAllocs()
	for b.Loop() {
		r.record(&o)
	}
}
