package gateway

import (
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// The warnings a valid config can earn: what it does that its operator may not mean.
// The server logs each as it starts (and, for some, as a reload installs a config);
// tollgate validate prints them (CheckConfig).
const (
	warnKeyExpired    = "client key expired: its requests are refused (401 expired_api_key)"
	warnInsecureTLS   = "tls.insecure_skip_verify accepts any certificate from this backend's targets: tests only"
	warnNoRespSecret  = "auth.response_secret is not set: a stored response's ID is a bearer token, and any key that reaches its backend may continue, read or delete it"
	warnAdminOpen     = "the admin API listens beyond loopback without server.admin_token: whoever reaches it can reload the config, override weights, operate canaries, revoke and restore keys, purge answer caches and read the key list"
	warnUngatedCanary = "the canary has no gate (max_error_rate, max_p99, max_ttft_p99): it steps up to 100 % whatever its upstream answers, and only an operator rolls it back"
	warnAbsentKeyFile = "an API key field names a file that is not there (or not a regular file): its path is sent as the key, as MLflow does, until the file appears; the file is watched"
)

// warnMLflowNameless follows the key of an MLflow endpoint's model.name left out where
// the upstream is the provider's own API (OpenAI, Anthropic, Mistral, Together AI).
const warnMLflowNameless = "left out, so each call goes to the provider's own API without a model, which it refuses (as it refuses MLflow's \"model\": null): name the model"

// configWarnings are the warnings of rt's config at now, each as
// FILE:LINE: key: warning: what, in the config's order of sections.
func configWarnings(rt *runtime, now time.Time) []string {
	c := rt.cfg
	var out []string
	warn := func(key, what string) { out = append(out, c.problemAt(key, "warning: "+what)) }
	if c.Server.AdminToken == "" && !loopbackHost(c.Server.AdminListen) {
		warn("server.admin_listen", warnAdminOpen)
	}
	for _, name := range c.backendNames() {
		b := c.Backends[name]
		for _, w := range b.URLWarnings() {
			warn("backends."+name+"."+w.Key(), w.Problem())
		}
		if b.TLS.InsecureSkipVerify {
			warn("backends."+name+".tls.insecure_skip_verify", warnInsecureTLS)
		}
	}
	for _, f := range c.keyFiles {
		if !f.absent() {
			continue
		}
		line := c.path + ":" + strconv.Itoa(f.line) + ": " + f.field + ": warning: " + warnAbsentKeyFile
		if f.dirThere() {
			line += " (" + f.path + ")"
		} else {
			line += ", and its directory, not there either"
		}
		out = append(out, line)
	}
	for i, kc := range c.Auth.Keys {
		if x := newKeyExpiry(kc.ExpiresAt); x.passed(now) {
			warn("auth.keys["+strconv.Itoa(i)+"].expires_at", "client key "+kc.Name+" expired at "+expiryText(x.at)+": its requests are refused (401 expired_api_key)")
		}
	}
	for i := range c.Endpoints {
		if cn := c.Endpoints[i].Canary; cn != nil && cn.MaxErrorRate == nil && cn.MaxP99 == 0 && cn.MaxTTFTP99 == 0 {
			warn("endpoints["+strconv.Itoa(i)+"].canary", warnUngatedCanary)
		}
		if m := c.Endpoints[i].mlflow; m != nil && m.hostedNameless != "" {
			// Already the MLflow file's key, which problemAt would map again.
			out = append(out, c.path+":"+strconv.Itoa(c.lineOf(m.hostedNameless))+": "+m.hostedNameless+": warning: "+warnMLflowNameless)
		}
	}
	if rt.responsesUnsigned() {
		warn("auth.response_secret", warnNoRespSecret)
	}
	return out
}

// responsesUnsigned reports whether keys share stored responses whose IDs are not
// signed (warnNoRespSecret).
func (rt *runtime) responsesUnsigned() bool {
	return rt.authKeys && rt.signer == nil && rt.sharedResponses()
}

// dirThere reports whether the key file's directory is there: only then is its path
// shown in a warning (a value that merely reads as a path may still be a key, and a
// key is never shown).
func (f keyFile) dirThere() bool {
	fi, err := os.Stat(filepath.Dir(f.path))
	return err == nil && fi.IsDir()
}
