package providers

import (
	"errors"
	"net/url"
	"strconv"
	"time"
)

// Config is one entry of the top-level `backends:` map: one upstream API, served by one
// URL or a pool of replica URLs.
type Config struct {
	// Provider is the upstream's API: openai, azure, anthropic or mock.
	Provider string `yaml:"provider"`
	// BaseURL is the one upstream URL (for OpenAI-compatible APIs ending in /v1).
	BaseURL string `yaml:"base_url"`
	// Targets are replica URLs; a backend has BaseURL or Targets.
	Targets []string `yaml:"targets"`
	// Model is the upstream's model name that replaces the client's endpoint name.
	Model string `yaml:"model"`
	// APIKey is sent to the upstream; never logged.
	APIKey string `yaml:"api_key"`
	// Headers are extra headers sent to the upstream.
	Headers map[string]string `yaml:"headers"`
	// Pricing turns token counts into cost.
	Pricing Pricing `yaml:"pricing"`
	// Timeout bounds one attempt: the whole response, or the whole stream.
	Timeout time.Duration `yaml:"timeout"`
	// ConnectTimeout bounds dialing and waiting for a free connection.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// MaxConnections caps open connections per target.
	MaxConnections int `yaml:"max_connections"`
	// StreamUsage asks the upstream for a usage chunk on streams the client did not ask
	// one for (stream_options.include_usage), and hides it from the client. Default true;
	// turn off for servers that reject stream_options.
	StreamUsage *bool `yaml:"stream_usage"`
	// Mock configures the built-in mock upstream (provider: mock).
	Mock MockConfig `yaml:"mock"`

	// Deployment is the Azure OpenAI deployment that serves the model (provider: azure).
	Deployment string `yaml:"deployment"`
	// APIVersion is Azure OpenAI's api-version query value (provider: azure).
	APIVersion string `yaml:"api_version"`
	// AnthropicVersion is the anthropic-version header (provider: anthropic).
	AnthropicVersion string `yaml:"anthropic_version"`
	// MaxTokens is the max_tokens sent when the client gives none (provider: anthropic,
	// whose Messages API requires one).
	MaxTokens int64 `yaml:"max_tokens"`

	// MaxResponseBytes bounds a buffered upstream answer.
	MaxResponseBytes int64 `yaml:"-"`
}

// Pricing is the backend's price per million tokens, in US dollars.
type Pricing struct {
	InputPerMillion  float64 `yaml:"input_per_million"`
	OutputPerMillion float64 `yaml:"output_per_million"`
}

// Cost is the price of u in US dollars.
func (p Pricing) Cost(u Usage) float64 {
	return (float64(u.Input)*p.InputPerMillion + float64(u.Output)*p.OutputPerMillion) / 1e6
}

// MockConfig shapes the built-in mock upstream's answers.
type MockConfig struct {
	TTFT         time.Duration `yaml:"ttft"`
	TPOT         time.Duration `yaml:"tpot"`
	MaxTokens    int           `yaml:"max_tokens"`
	ErrorRate    float64       `yaml:"error_rate"`
	Seed         int64         `yaml:"seed"`
	EmbeddingDim int           `yaml:"embedding_dim"`
}

// FieldError is one invalid configuration key.
type FieldError struct{ key, problem string }

// Key is the dotted path of the key, relative to the backend.
func (e *FieldError) Key() string { return e.key }

// Problem says what is wrong with it.
func (e *FieldError) Problem() string { return e.problem }

func (e *FieldError) Error() string { return e.key + ": " + e.problem }

func fieldErr(key, problem string) error { return &FieldError{key, problem} }

// Validate reports every problem with the backend's settings.
func (c *Config) Validate() error {
	var errs []error
	switch c.Provider {
	case "openai", "mock", "azure", "anthropic":
	case "":
		errs = append(errs, fieldErr("provider", "is required (openai, azure, anthropic or mock)"))
	default:
		errs = append(errs, fieldErr("provider", "must be one of openai, azure, anthropic, mock"))
	}
	if c.Provider != "mock" {
		switch {
		case c.BaseURL == "" && len(c.Targets) == 0:
			errs = append(errs, fieldErr("base_url", "is required (or targets)"))
		case c.BaseURL != "" && len(c.Targets) > 0:
			errs = append(errs, fieldErr("targets", "give base_url or targets, not both"))
		}
		if c.BaseURL != "" {
			if err := checkURL(c.BaseURL); err != nil {
				errs = append(errs, fieldErr("base_url", err.Error()))
			}
		}
		for i, t := range c.Targets {
			if err := checkURL(t); err != nil {
				errs = append(errs, fieldErr("targets["+strconv.Itoa(i)+"]", err.Error()))
			}
		}
	}
	if c.Model == "" {
		errs = append(errs, fieldErr("model", "is required"))
	}
	if c.Pricing.InputPerMillion < 0 {
		errs = append(errs, fieldErr("pricing.input_per_million", "must not be negative"))
	}
	if c.Pricing.OutputPerMillion < 0 {
		errs = append(errs, fieldErr("pricing.output_per_million", "must not be negative"))
	}
	if c.Timeout < 0 {
		errs = append(errs, fieldErr("timeout", "must not be negative"))
	}
	if c.ConnectTimeout < 0 {
		errs = append(errs, fieldErr("connect_timeout", "must not be negative"))
	}
	if c.MaxConnections < 0 {
		errs = append(errs, fieldErr("max_connections", "must not be negative"))
	}
	if c.Mock.ErrorRate < 0 || c.Mock.ErrorRate > 1 {
		errs = append(errs, fieldErr("mock.error_rate", "must be between 0 and 1"))
	}
	if c.Mock.MaxTokens < 0 {
		errs = append(errs, fieldErr("mock.max_tokens", "must not be negative"))
	}
	errs = append(errs, c.validateAzure()...)
	errs = append(errs, c.validateAnthropic()...)
	return errors.Join(errs...)
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("is not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("must start with http:// or https://")
	}
	if u.Host == "" {
		return errors.New("has no host")
	}
	if u.User != nil {
		return errors.New("must not hold credentials (use api_key)")
	}
	return nil
}

func (c *Config) withDefaults() Config {
	d := *c
	if d.Timeout == 0 {
		d.Timeout = 10 * time.Minute
	}
	if d.ConnectTimeout == 0 {
		d.ConnectTimeout = 5 * time.Second
	}
	if d.MaxConnections == 0 {
		d.MaxConnections = 1024
	}
	if d.MaxResponseBytes == 0 {
		d.MaxResponseBytes = 64 << 20
	}
	switch d.Provider {
	case "azure":
		if d.APIVersion == "" {
			d.APIVersion = defaultAzureAPIVersion
		}
	case "anthropic":
		if d.AnthropicVersion == "" {
			d.AnthropicVersion = defaultAnthropicVersion
		}
		if d.MaxTokens == 0 {
			d.MaxTokens = defaultAnthropicMaxTokens
		}
	}
	return d
}

func (c *Config) streamUsage() bool { return c.StreamUsage == nil || *c.StreamUsage }
