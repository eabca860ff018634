package providers

import (
	"github.com/tollgate/tollgate/providers/mockllm"
	"github.com/valyala/fasthttp/fasthttputil"
)

// mockKey names a mock backend's engine: its backend's name, model and options.
type mockKey struct {
	name, model string
	mock        MockConfig
}

// sharedMock is a mock backend's engine on its in-memory listener, shared by the
// backends built with its key until the last is closed: a reload keeps the engine,
// the responses it stores among its state, as a real upstream outlives a reload.
type sharedMock struct {
	srv  *mockllm.Server
	ln   *fasthttputil.InmemoryListener
	refs int
}

// acquireMock returns the engine of k, started now if none runs.
func (p *Pools) acquireMock(k mockKey) (*sharedMock, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m := p.mocks[k]; m != nil {
		m.refs++
		return m, nil
	}
	srv, err := mockllm.New(mockllm.Options{
		Model:        k.model,
		API:          "openai",
		TTFT:         k.mock.TTFT,
		TPOT:         k.mock.TPOT,
		MaxTokens:    k.mock.MaxTokens,
		ErrorRate:    k.mock.ErrorRate,
		Seed:         k.mock.Seed,
		EmbeddingDim: k.mock.EmbeddingDim,
	})
	if err != nil {
		return nil, err
	}
	m := &sharedMock{srv: srv, ln: fasthttputil.NewInmemoryListener(), refs: 1}
	go func() { _ = m.srv.Serve(m.ln) }()
	p.mocks[k] = m
	return m, nil
}

// releaseMock gives back a hold on the engine of k, stopping it with the last.
func (p *Pools) releaseMock(k mockKey) error {
	p.mu.Lock()
	m := p.mocks[k]
	if m == nil {
		p.mu.Unlock()
		return nil
	}
	if m.refs--; m.refs > 0 {
		p.mu.Unlock()
		return nil
	}
	delete(p.mocks, k)
	p.mu.Unlock()
	err := m.srv.Shutdown()
	_ = m.ln.Close()
	return err
}

// newMock runs the mockllm engine in process, on an in-memory listener, and talks to it
// with the openai provider: the demo config exercises the same wire path as a real
// upstream, with nothing else installed. The engine is ps's, kept across reloads that
// keep the backend's name and options.
func newMock(c *Config, name string, ps *Pools) (*Target, Provider, func() error, error) {
	k := mockKey{name: name, model: c.Model, mock: c.Mock}
	m, err := ps.acquireMock(k)
	if err != nil {
		return nil, nil, nil, err
	}
	t, err := newTarget("http://mock.internal/v1", c, name)
	if err != nil {
		_ = ps.releaseMock(k)
		return nil, nil, nil, err
	}
	t.client.Dial = func(string) (netConn, error) {
		c, err := m.ln.Dial()
		if err != nil {
			return nil, err
		}
		return wrapUpstream(c), nil
	}
	closer := func() error {
		t.client.CloseIdleConnections()
		return ps.releaseMock(k)
	}
	return t, newOpenAI(c), closer, nil
}
