package providers

import (
	"github.com/tollgate/tollgate/providers/mockllm"
	"github.com/valyala/fasthttp/fasthttputil"
)

// newMock runs the mockllm engine in process, on an in-memory listener, and talks to it
// with the openai provider: the demo config exercises the same wire path as a real
// upstream, with nothing else installed.
func newMock(c *Config, name string) (*Target, Provider, func() error, error) {
	srv, err := mockllm.New(mockllm.Options{
		Model:        c.Model,
		API:          "openai",
		TTFT:         c.Mock.TTFT,
		TPOT:         c.Mock.TPOT,
		MaxTokens:    c.Mock.MaxTokens,
		ErrorRate:    c.Mock.ErrorRate,
		Seed:         c.Mock.Seed,
		EmbeddingDim: c.Mock.EmbeddingDim,
	})
	if err != nil {
		return nil, nil, nil, err
	}
	ln := fasthttputil.NewInmemoryListener()
	go func() { _ = srv.Serve(ln) }()
	t, err := newTarget("http://mock.internal/v1", c, name)
	if err != nil {
		return nil, nil, nil, err
	}
	t.client.Dial = func(string) (netConn, error) {
		c, err := ln.Dial()
		if err != nil {
			return nil, err
		}
		return wrapUpstream(c), nil
	}
	closer := func() error {
		t.client.CloseIdleConnections()
		err := srv.Shutdown()
		_ = ln.Close()
		return err
	}
	return t, newOpenAI(c), closer, nil
}
