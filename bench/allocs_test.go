//go:build !race

package main

import (
	"bufio"
	"strings"
	"testing"
	"time"
)

// The client's per-request work must not allocate: garbage collection in
// the load generator would show up as latency of the path under test.
func TestAllocs(t *testing.T) {
	sr := strings.NewReader(benchStream)
	br := bufio.NewReaderSize(sr, 64<<10)
	s := sseReader{r: br}
	// Grow the data buffer once, as the first stream of a worker does.
	if _, err := s.next(); err != nil {
		t.Fatal(err)
	}
	r := &recorder{st: newRunStats()}
	o := outcome{measured: true, lat: 123456, lag: 789, ttft: 5000, gaps: []time.Duration{1000, 1100}}
	cases := []struct {
		name string
		max  float64
		fn   func()
	}{
		{"sse stream of 64 events", 0, func() {
			sr.Reset(benchStream)
			br.Reset(sr)
			for {
				d, err := s.next()
				if err != nil || string(d) == "[DONE]" {
					return
				}
				isErrorEvent(d)
				hasContent(d)
			}
		}},
		{"error event check", 0, func() { isErrorEvent(errorEventBytes) }},
		{"completion body check", 0, func() { hasMember(completionBytes, "choices") }},
		{"rerank body check", 0, func() { hasMember(rerankAnswerBytes, answerMember(kindRerank)) }},
		{"messages body check", 0, func() { isAnswer(kindMessages, messageAnswerBytes) }},
		{"record an outcome", 0, func() { r.record(&o) }},
		{"pacer schedule", 0, func() { _ = pacer{rate: 1234}.at(99999) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := testing.AllocsPerRun(100, tc.fn); got > tc.max {
				t.Fatalf("%v allocs per run, budget %v", got, tc.max)
			}
		})
	}
}
