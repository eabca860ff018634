package providers

import (
	"net/url"
	"strconv"
	"strings"
)

// defaultAzureAPIVersion is the newest generally available Azure OpenAI data-plane
// version that accepts stream_options, which the gateway relies on for stream usage.
const defaultAzureAPIVersion = "2024-10-21"

// azureStreamOptionsSince is the first Azure OpenAI api-version that accepts
// stream_options (2024-09-01-preview); older ones answer it with a 400
// "Unrecognized request argument supplied: stream_options". Versions are dates, so
// they compare as text.
const azureStreamOptionsSince = "2024-09-01"

// newAzure speaks Azure OpenAI: the OpenAI wire format, with the deployment in the URL
// (see azureURLs) and the key in an api-key header instead of a bearer token. Stream
// usage is on by default only for api-versions that accept stream_options; an older
// one streams without usage, as a backend with stream_usage: false does, unless
// stream_usage is set.
func newAzure(c *Config) *openAI {
	cc := *c
	cc.APIKey = ""
	if cc.azureUsageOff() {
		off := false
		cc.StreamUsage = &off
	}
	o := newOpenAI(&cc)
	if c.APIKey != "" {
		o.headers = append(o.headers, [2]string{"api-key", c.APIKey})
		o.addSecret(c.APIKey)
	}
	return o
}

// azureUsageOff reports whether an azure backend of config c streams without usage
// though stream_usage is not set: its api_version, given, is older than
// azureStreamOptionsSince (left out, it is defaultAzureAPIVersion, which takes them).
func (c *Config) azureUsageOff() bool {
	return c.Provider == "azure" && c.StreamUsage == nil && c.APIVersion != "" && c.APIVersion < azureStreamOptionsSince
}

// azureURLs points a target's operations at the deployment:
// {base}/openai/deployments/{deployment}/{operation}?api-version={version}.
func azureURLs(t *Target, c *Config) {
	base := strings.TrimRight(t.URL, "/")
	// Azure's portal shows the endpoint with and without /openai; accept both.
	base = strings.TrimSuffix(base, "/openai")
	prefix := base + "/openai/deployments/" + url.PathEscape(c.Deployment)
	query := "?api-version=" + url.QueryEscape(c.APIVersion)
	for _, k := range []Kind{Chat, Completions, Embeddings, Transcription, Translation} {
		t.setURL(k, prefix+k.Path()+query)
	}
}

func (c *Config) validateAzure() []error {
	var errs []error
	if c.Provider != "azure" {
		if c.Deployment != "" {
			errs = append(errs, fieldErr("deployment", "applies only to provider azure"))
		}
		if c.APIVersion != "" {
			errs = append(errs, fieldErr("api_version", "applies only to provider azure"))
		}
		return errs
	}
	switch {
	case c.Deployment == "":
		errs = append(errs, fieldErr("deployment", "is required for provider azure (the deployment name in the Azure portal)"))
	case !isToken(c.Deployment):
		errs = append(errs, fieldErr("deployment", "may hold only letters, digits, '-', '_' and '.'"))
	}
	if c.APIVersion != "" && !isToken(c.APIVersion) {
		errs = append(errs, fieldErr("api_version", "may hold only letters, digits, '-', '_' and '.' (for example 2024-10-21)"))
	}
	for i, t := range append([]string{c.BaseURL}, c.Targets...) {
		if u, err := url.Parse(t); err == nil && u.RawQuery != "" {
			key := "base_url"
			if i > 0 {
				key = "targets[" + strconv.Itoa(i-1) + "]"
			}
			errs = append(errs, fieldErr(key, "must have no query: api_version sets api-version"))
		}
	}
	return errs
}

// isToken reports whether s holds only letters, digits, '-', '_' and '.', so that it
// can go into a URL path or query as it is.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}
