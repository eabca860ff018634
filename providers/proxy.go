package providers

import (
	"errors"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpproxy"
	"golang.org/x/net/http/httpproxy"
)

// validateProxy checks the proxy URL without quoting it: it may hold a password.
func (c *Config) validateProxy() []error {
	if c.Proxy == "" {
		return nil
	}
	if c.Provider == "mock" {
		return []error{fieldErr("proxy", "does not apply to provider mock, which answers in process")}
	}
	u, err := url.Parse(c.Proxy)
	switch {
	case err != nil:
		return []error{fieldErr("proxy", "is not a URL (percent-encode / ? # @ % in a password)")}
	case u.Scheme != "http" && u.Scheme != "socks5" && u.Scheme != "socks5h":
		return []error{fieldErr("proxy", "must start with http://, socks5:// or socks5h://")}
	case u.Host == "" || u.Port() == "":
		return []error{fieldErr("proxy", "must name a host and a port")}
	case u.Path != "" && u.Path != "/" || u.RawQuery != "":
		return []error{fieldErr("proxy", "must have no path or query")}
	}
	return nil
}

// proxyDial is the dial through the backend's proxy, nil when it has none. connect
// bounds both the connection to the proxy and its answer to CONNECT.
func proxyDial(proxy string, isTLS bool, connect time.Duration) (fasthttp.DialFunc, error) {
	if proxy == "" {
		return nil, nil
	}
	d := &fasthttpproxy.Dialer{
		Config: httpproxy.Config{HTTPProxy: proxy, HTTPSProxy: proxy},
		// Without it the dial to the proxy is IPv4 only: a proxy at an IPv6
		// address, or named with only AAAA records, would be unreachable.
		DialDualStack:  true,
		Timeout:        connect,
		ConnectTimeout: connect,
	}
	dial, err := d.GetDialFuncForTLS(false, isTLS)
	if err != nil {
		// The proxy's URL is not repeated: it may hold a password.
		return nil, errors.New("proxy: cannot be used")
	}
	return dial, nil
}
