package providers

import (
	"crypto/tls"
	"errors"
	"strings"

	"github.com/tollgate/tollgate/internal/pemfile"
)

// TLSConfig is how a backend's https targets are verified, and the certificate it
// shows them when they ask for one (mutual TLS).
type TLSConfig struct {
	// CAFile is a PEM bundle of the certificate authorities that sign the targets'
	// certificates; when set, only these are trusted (a private CA in front of vLLM).
	// Empty: the system's roots.
	CAFile string `yaml:"ca_file"`
	// ServerName is the name the targets' certificates must carry, and the SNI sent;
	// empty: each target's host. Set it when targets are addressed by IP.
	ServerName string `yaml:"server_name"`
	// CertFile and KeyFile are the gateway's client certificate and key, in PEM, for
	// targets that require one.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// InsecureSkipVerify accepts any certificate: for tests only, never in production.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

func (c *TLSConfig) given() bool { return *c != (TLSConfig{}) }

// validateTLS checks the tls block: it applies to https targets, and its files must
// be readable PEM with what they are said to hold.
func (c *Config) validateTLS() []error {
	t := &c.TLS
	if !t.given() {
		return nil
	}
	var errs []error
	if !c.hasHTTPS() {
		errs = append(errs, fieldErr("tls", "applies only to https targets"))
	}
	if t.CAFile != "" {
		if _, err := pemfile.CertPool(t.CAFile); err != nil {
			errs = append(errs, fieldErr("tls.ca_file", err.Error()))
		}
	}
	switch {
	case (t.CertFile == "") != (t.KeyFile == ""):
		errs = append(errs, fieldErr("tls.cert_file", "and tls.key_file go together"))
	case t.CertFile != "":
		if _, err := pemfile.KeyPair(t.CertFile, t.KeyFile); err != nil {
			errs = append(errs, fieldErr("tls.cert_file", "with tls.key_file: "+err.Error()))
		}
	}
	if strings.ContainsAny(t.ServerName, " \t\r\n/:") {
		errs = append(errs, fieldErr("tls.server_name", "must be a host name"))
	}
	return errs
}

func (c *Config) hasHTTPS() bool {
	for _, u := range append([]string{c.BaseURL}, c.Targets...) {
		if strings.HasPrefix(strings.ToLower(u), "https://") {
			return true
		}
	}
	return false
}

// ClientConfig is the tls.Config of the backend's https targets, nil for Go's
// defaults, read from t's files as building the backend reads them.
func (t *TLSConfig) ClientConfig() (*tls.Config, error) {
	if !t.given() {
		return nil, nil
	}
	cfg := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pool, err := pemfile.CertPool(t.CAFile)
		if err != nil {
			return nil, errors.New("tls.ca_file: " + err.Error())
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		pair, err := pemfile.KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, errors.New("tls.cert_file: " + err.Error())
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
