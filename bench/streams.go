package main

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"
)

// Upstream pacing for streams-10k: slow enough that every stream stays
// open through the ramp and the hold, fast enough that chunks keep flowing
// through each connection while memory is read.
const (
	streamsTTFT = 50 * time.Millisecond
	streamsTPOT = 500 * time.Millisecond
)

// streamsTokens is how many tokens each stream must carry to stay open
// from its start through the ramp, the hold and a margin.
func streamsTokens(ramp, hold time.Duration) int {
	return int((ramp+hold+2*time.Second)/streamsTPOT) + 1
}

// runStreams holds --streams concurrent slow streams through each path in
// turn and reads the memory of the process in the middle (the gateway,
// nginx's master and workers, or for the direct path mockllm itself)
// before and while they are open.
func runStreams(ctx context.Context, o *options, b *bins, cores CoreMap, prog *progress) (*Result, error) {
	n := o.Streams
	// Through a proxy each stream is two sockets in the proxy and one in
	// the harness and the upstream.
	want := uint64(3*n + 8192)
	got, err := raiseNoFile(want)
	if err != nil {
		return nil, fmt.Errorf("raising RLIMIT_NOFILE: %w", err)
	}
	ramp := time.Duration(float64(n) / o.StreamRate * float64(time.Second))
	tokens := streamsTokens(ramp, o.Hold)
	timing := upstreamTiming{TTFT: streamsTTFT, TPOT: streamsTPOT, MaxTokens: upstreamCap(tokens), MaxSeqs: 2 * n}
	e, err := newEnv(o, b, cores)
	if err != nil {
		return nil, err
	}
	defer e.close()
	ts, err := e.setup(ctx, scenario{name: "streams-10k", kind: kindStream, proxyConns: 2*n + 1024}, timing)
	if err != nil {
		return nil, err
	}
	res := newResult(o, cores, "streams-10k", timing)
	res.Settings.Rate = o.StreamRate
	res.Settings.Duration = (ramp + o.Hold).String()
	res.Settings.Warmup = "0s"
	res.Settings.Rounds = 1
	res.Settings.Connections = n
	res.Settings.MaxTokens = tokens
	if got < want {
		res.Notes = append(res.Notes, "RLIMIT_NOFILE could only be raised to "+strconv.FormatUint(got, 10)+
			" (the hard limit; more needs root with CAP_SYS_RESOURCE): a proxy holds two sockets per stream, so expect"+
			" failures past about "+strconv.FormatUint(got/2, 10)+" streams")
	}
	for _, t := range ts {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		sr, err := holdStreams(ctx, o, t, n, ramp, tokens, prog)
		if err != nil {
			return nil, err
		}
		res.Streams = append(res.Streams, sr)
	}
	for _, sr := range res.Streams {
		if sr.Note != "" {
			res.Notes = append(res.Notes, sr.Path+": "+sr.Note)
		}
	}
	res.Notes = append(res.Notes,
		"RSS and goroutines are the highest of readings every 250 ms through the run; per stream they are divided by the most streams open at once",
		"KiB per stream = (RSS with all streams open − RSS before) / streams; goroutines likewise, from go_goroutines on the admin /metrics",
		"direct measures mockllm (the upstream) itself; nginx sums its master and workers")
	return res, nil
}

// processRSS reads the RSS of the path's middle process.
func processRSS(t *target) (int64, error) {
	if t.Name == pathNginx {
		return treeRSSKB(t.Pid)
	}
	return rssKB(t.Pid)
}

func holdStreams(ctx context.Context, o *options, t *target, n int, ramp time.Duration, tokens int, prog *progress) (StreamsResult, error) {
	sr := StreamsResult{Path: t.Name, Streams: n, Process: "mockllm"}
	switch t.Name {
	case pathNginx:
		sr.Process = "nginx"
	case pathTollgate:
		sr.Process = "tollgate"
	}
	var err error
	if sr.RSSBeforeKB, err = processRSS(t); err != nil {
		return sr, err
	}
	var before, peak goStats
	if t.AdminAddr != "" {
		if before, err = readGoStats(t.AdminAddr); err != nil {
			return sr, err
		}
		sr.GoroutinesBefore = before.Goroutines
	}
	var active atomic.Int64
	timeout := ramp + o.Hold + time.Minute
	// 4 KiB buffers: 10,000 streams of a few hundred bytes per event need
	// no more, and the harness's own memory stays far below the proxies'.
	const buf = 4 << 10
	t.client = newClient(t.Addr, n+16, timeout, true, buf)
	defer t.client.CloseIdleConnections()
	spec := loadSpec{Kind: kindStream, Rate: o.StreamRate, Duration: ramp, Conns: n, MaxTokens: tokens,
		Timeout: timeout, ReadBuf: buf, Active: &active, Spin: o.Spin}
	done := make(chan *runStats, 1)
	go func() { done <- runLoad(ctx, t, &spec, prog) }()

	// Read the process every 250 ms for the whole run and keep the peaks:
	// the plateau with every stream open lasts --hold, so it is always
	// among the readings, and a path that never gets all streams open is
	// still measured at the most it held.
	var st *runStats
	tk := time.NewTicker(250 * time.Millisecond)
	defer tk.Stop()
	sample := func() {
		sr.PeakOpen = max(sr.PeakOpen, active.Load())
		if v, err := processRSS(t); err == nil {
			sr.RSSPeakKB = max(sr.RSSPeakKB, v)
		}
		if t.AdminAddr != "" {
			if v, err := readGoStats(t.AdminAddr); err == nil {
				sr.GoroutinesPeak = max(sr.GoroutinesPeak, v.Goroutines)
				peak.HeapInuse = max(peak.HeapInuse, v.HeapInuse)
				peak.StackInuse = max(peak.StackInuse, v.StackInuse)
			}
		}
	}
	for st == nil {
		select {
		case st = <-done:
		case <-tk.C:
			sample()
		}
	}
	if ctx.Err() != nil {
		return sr, ctx.Err()
	}
	sr.Errors = st.Errs
	sr.TTFT = summarize(st.TTFT)
	sr.Gap = summarize(st.Gap)
	if sr.PeakOpen < int64(n) {
		sr.Note = strconv.FormatInt(sr.PeakOpen, 10) + " of " + strconv.Itoa(n) + " streams open at once at most"
	}
	if sr.PeakOpen > 0 {
		sr.PerStreamKB = float64(sr.RSSPeakKB-sr.RSSBeforeKB) / float64(sr.PeakOpen)
		if peak.HeapInuse > 0 {
			sr.HeapPerStreamKB = float64(peak.HeapInuse-before.HeapInuse) / 1024 / float64(sr.PeakOpen)
			sr.StackPerStreamKB = float64(peak.StackInuse-before.StackInuse) / 1024 / float64(sr.PeakOpen)
		}
		if sr.GoroutinesPeak > 0 {
			sr.GoroutinesPer = float64(sr.GoroutinesPeak-sr.GoroutinesBefore) / float64(sr.PeakOpen)
		}
	}
	return sr, nil
}
