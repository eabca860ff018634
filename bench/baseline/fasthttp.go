package main

import (
	"net"
	"sync"

	"github.com/valyala/fasthttp"
)

var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// serveFasthttp proxies through fasthttp's server and HostClient, as Tollgate does,
// rewriting the model and nothing else.
func serveFasthttp(ln net.Listener, s settings) error {
	hc := &fasthttp.HostClient{
		Addr: s.upstream, MaxConns: 1 << 16, NoDefaultUserAgentHeader: true,
		DisableHeaderNamesNormalizing: true, DisablePathNormalizing: true,
	}
	h := func(ctx *fasthttp.RequestCtx) {
		req := &ctx.Request
		req.SetHost(s.upstream)
		bp := bodyPool.Get().(*[]byte)
		if b, ok := rewriteModel((*bp)[:0], req.Body(), s.rewrites); ok {
			req.SetBodyRaw(b)
			*bp = b
		}
		err := hc.Do(req, &ctx.Response)
		bodyPool.Put(bp)
		if err != nil {
			ctx.Response.Reset()
			ctx.SetStatusCode(fasthttp.StatusBadGateway)
		}
	}
	srv := &fasthttp.Server{Handler: h, Name: "baseline", NoDefaultDate: true, NoDefaultContentType: true}
	return srv.Serve(ln)
}
