package gateway

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"reflect"
	"regexp"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/internal/pemfile"
	"github.com/tollgate/tollgate/limiter"
	"github.com/tollgate/tollgate/metrics"
	"github.com/tollgate/tollgate/providers"
	"github.com/tollgate/tollgate/router"
	"github.com/tollgate/tollgate/tracing"
)

// Config is the whole gateway configuration file.
type Config struct {
	Server    ServerConfig                `yaml:"server"`
	Auth      AuthConfig                  `yaml:"auth"`
	Backends  map[string]providers.Config `yaml:"backends"`
	Endpoints []EndpointConfig            `yaml:"endpoints"`
	Limiter   limiter.Config              `yaml:"limiter"`
	Tracing   tracing.Config              `yaml:"tracing"`
	Logging   LoggingConfig               `yaml:"logging"`

	// path is the file the config was read from, for error messages.
	path  string
	lines map[string]int
	// scalars lists, per line, the key paths with scalar values there, so a decode error
	// that names a line, a value and a type can name its key.
	scalars map[int][]scalarAt
	// dups lists the mapping keys given twice, so the decoder's "mapping key already
	// defined" can name the key path rather than another key on its line.
	dups []dupKey
	// keyFiles are the files API keys were read from (MLflow's *_api_key naming a
	// file): the watch reloads when one of them changes.
	keyFiles []keyFile
	// mlflowKeys, for a config read from an MLflow file, names the file's keys in
	// place of those of the config built from it.
	mlflowKeys *mlflowKeys
	// refused are the key paths whose value was reported as not what the key takes
	// (of the wrong type, given twice, a fraction where a whole number belongs): the
	// rest of the file is still checked, but not those values again.
	refused []string
	// unread are the key paths whose value an environment problem left unknown (an
	// unset or malformed ${VAR}): that problem is the one reported for them.
	unread []string
}

// keyFile is a file an API key was read from, with the SHA-256 of what it held then;
// zero for a path-like key naming no file yet (absent). field and line are the config
// key naming it, for a warning that must not print a value that may be a key.
type keyFile struct {
	path  string
	sum   [sha256.Size]byte
	field string
	line  int
}

// scalarAt is a scalar value at a key path, decoded into a Go type (as yaml.v3's
// errors name it); want says what the key takes, for a message. For a mapping or list
// where the type takes another kind of value, value is collectionValue. node is the
// value itself (the anchored one, for an alias).
type scalarAt struct {
	path, value, typ, want string
	node                   *yaml.Node
}

// dupKey is a mapping key given a second time, at line, in the mapping at path: the
// key node k, of mapping m.
type dupKey struct {
	line      int
	key, path string
	m, k      *yaml.Node
}

// ServerConfig is the `server:` section.
type ServerConfig struct {
	Listen       string `yaml:"listen"`
	AdminListen  string `yaml:"admin_listen"`
	MaxBodyBytes Size   `yaml:"max_body_bytes"`
	// MaxBufferedBytes bounds the request bodies and the upstream answers held in
	// memory, all requests together (the buffers of those over 64 KiB; an answer's
	// until it is written to its client): a body or an answer that would pass it gets
	// 503 overloaded. Left out: 1GiB, or half the Go runtime's memory limit when that
	// is less, and never under MaxBodyBytes.
	MaxBufferedBytes Size          `yaml:"max_buffered_bytes"`
	ShutdownGrace    time.Duration `yaml:"shutdown_grace"`
	ReadTimeout      time.Duration `yaml:"read_timeout"`
	IdleTimeout      time.Duration `yaml:"idle_timeout"`
	// AdminToken, when set, is required as a bearer token on /admin/ routes.
	AdminToken string `yaml:"admin_token"`
	// TLS, when set, serves the API listener over HTTPS.
	TLS ServerTLS `yaml:"tls"`
	// TrustedProxies are the load balancers in front of the gateway (CIDRs or
	// addresses): from their connections, per: ip limits count the client address
	// X-Forwarded-For (or Forwarded, ForwardedHeader) names.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// ForwardedHeader is the one header read for the client's address behind
	// TrustedProxies: x-forwarded-for (the default) or forwarded (RFC 7239).
	ForwardedHeader string `yaml:"forwarded_header"`
}

// ServerTLS is the API listener's certificate and key, in PEM (a chain: the leaf
// first). Every reload reads them again, so a renewed certificate is served after a
// SIGHUP, POST /admin/reload or a change of the config file.
type ServerTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// load reads the certificate and key; nil when TLS is off.
func (t *ServerTLS) load() (*tls.Certificate, error) {
	if t.CertFile == "" && t.KeyFile == "" {
		return nil, nil
	}
	if t.CertFile == "" || t.KeyFile == "" {
		return nil, errors.New("cert_file and key_file go together")
	}
	pair, err := pemfile.KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, err
	}
	return &pair, nil
}

// AuthConfig is the `auth:` section.
type AuthConfig struct {
	Mode string      `yaml:"mode"`
	Keys []KeyConfig `yaml:"keys"`
	// ResponseSecret, when set, signs each stored response's ID the gateway returns
	// with the key that made it: another key cannot continue, read or delete it.
	ResponseSecret string `yaml:"response_secret"`
	// PreviousResponseSecret is the secret ResponseSecret replaces, while it is
	// rotated: IDs signed under it are still taken, new ones signed under
	// ResponseSecret.
	PreviousResponseSecret string `yaml:"previous_response_secret"`
}

// KeyConfig is one client API key: the key itself (usually `${VAR}`) or its SHA-256.
type KeyConfig struct {
	Name      string   `yaml:"name"`
	Key       string   `yaml:"key"`
	SHA256    string   `yaml:"sha256"`
	Endpoints []string `yaml:"endpoints"`
	// Limits apply to every request made with this key, besides the endpoint's.
	Limits []limiter.Limit `yaml:"limits"`
	// ExpiresAt is when the key stops working: an RFC 3339 timestamp with its zone
	// (key_expiry.go). Empty is never.
	ExpiresAt string `yaml:"expires_at"`
}

// EndpointConfig is one entry of `endpoints:`: a name clients put in "model". Its
// routing keys (routes, sticky, canary, retries, fallbacks) are the router's.
type EndpointConfig struct {
	Name string `yaml:"name"`
	// Aliases are other names clients may give as "model" for this endpoint (a
	// model's dated or older name while clients move): the same endpoint, its
	// limits, canary and metrics, under Name.
	Aliases       []string `yaml:"aliases"`
	Type          string   `yaml:"type"`
	router.Config `yaml:",inline"`
	// Timeout bounds a request on this endpoint, all attempts included.
	Timeout time.Duration `yaml:"timeout"`
	// Limits are the endpoint's rate limits.
	Limits []limiter.Limit `yaml:"limits"`
	// DefaultMaxTokens is the output a token limit is charged up front for a request
	// that names no max_tokens; the true usage settles it afterwards.
	DefaultMaxTokens int64 `yaml:"default_max_tokens"`
	// Cache keeps the endpoint's answers for requests repeated exactly (cache.go).
	Cache *CacheConfig `yaml:"cache"`

	// mlflow is set for endpoints read from an MLflow AI Gateway config.
	mlflow *mlflowInfo
}

// LoggingConfig is the `logging:` section.
type LoggingConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
	// AccessLog writes one line per request (default true).
	AccessLog *bool `yaml:"access_log"`
}

// Size is a byte count written as 8MiB, 512KB, 1048576 …, as a backend's
// max_response_bytes is.
type Size = providers.Size

// ParseSize reads a byte count such as 8MiB or 512kb.
func ParseSize(v string) (int64, error) { return providers.ParseSize(v) }

// ConfigError lists every problem found in a config file, each as FILE:LINE: key: what.
type ConfigError struct {
	Problems []string
	// tlsFiles are the tls files (server's and backends') the config names, for the
	// watch to follow while its reload fails: a pair half written completes there.
	tlsFiles []string
}

func (e *ConfigError) Error() string { return strings.Join(e.Problems, "\n") }

// newConfigError is the ConfigError of problems, each value they quote bounded
// (boundQuoted), and of the config's tls files.
func newConfigError(problems, tlsFiles []string) *ConfigError {
	for i, p := range problems {
		problems[i] = boundQuoted(p)
	}
	return &ConfigError{Problems: problems, tlsFiles: tlsFiles}
}

// maxQuoted is the most bytes of a value that a config error quotes.
const maxQuoted = 64

// boundQuoted cuts each quoted value in a config problem ("…", or `…` as yaml.v3 and
// the size and duration messages quote) that is over maxQuoted bytes to its first maxQuoted (its runes whole), followed by "…" and its
// length in bytes. A problem quotes the value it refuses so that its writer sees what
// was read; a value pasted whole into a key (a file, a runaway template's output)
// would otherwise come back whole in validate's output, the failed reload's log line
// and the admin API's answer, megabytes of each. Every problem passes here, those of
// router, limiter and providers included, so the values they quote are bounded
// where they are joined.
func boundQuoted(s string) string {
	var b strings.Builder
	from := 0 // s[from:] is not written to b yet
	for i := 0; i < len(s); {
		j := strings.IndexAny(s[i:], "\"`")
		if j < 0 {
			break
		}
		i += j
		lit, err := strconv.QuotedPrefix(s[i:])
		if err != nil {
			i++
			continue
		}
		v, err := strconv.Unquote(lit)
		if lit[0] == '`' {
			// As written: Go's raw strings drop every '\r', which a value may hold.
			v = lit[1 : len(lit)-1]
		}
		if err == nil && len(v) > maxQuoted {
			cut := maxQuoted
			for cut > 0 && !utf8.RuneStart(v[cut]) {
				cut--
			}
			b.WriteString(s[from:i])
			if lit[0] == '`' {
				b.WriteString(lit[:1+cut])
				b.WriteByte('`')
			} else {
				b.WriteString(strconv.Quote(v[:cut]))
			}
			b.WriteString("… (")
			b.WriteString(strconv.Itoa(len(v)))
			b.WriteString(" bytes)")
			from = i + len(lit)
		}
		i += len(lit)
	}
	if from == 0 {
		return s
	}
	b.WriteString(s[from:])
	return b.String()
}

// LoadConfig reads, expands and validates a config file.
func LoadConfig(path string) (*Config, error) {
	cfg, _, err := readConfig(path, os.LookupEnv)
	return cfg, err
}

// ParseConfig decodes config bytes; path only names the file in messages.
func ParseConfig(path string, data []byte, env func(string) (string, bool)) (*Config, error) {
	cfg := &Config{path: path, lines: map[string]int{}, scalars: map[int][]scalarAt{}}
	if twoBOMs(data) {
		// yaml.v3 takes the first and misreads the text after the second: a
		// misspelled key somewhere below, not the file's first bytes.
		return nil, newConfigError([]string{path + ":1: the file begins with two byte order marks (U+FEFF): save it with one or none"}, nil)
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && err != io.EOF {
		return nil, newConfigError([]string{yamlProblem(path, data, err)}, nil)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].ShortTag() == "!!null" {
		// Nothing, comments, or a document start alone: what a half-written file
		// may hold.
		return nil, newConfigError([]string{path + ":1: the file is empty"}, nil)
	}
	var more yaml.Node
	if err := dec.Decode(&more); err != io.EOF {
		line := 1
		if err == nil && len(more.Content) > 0 {
			line = more.Content[0].Line
		}
		if err != nil {
			return nil, newConfigError([]string{yamlProblem(path, data, err)}, nil)
		}
		return nil, newConfigError([]string{path + ":" + strconv.Itoa(line) + ": a second YAML document (after ---) is not read: one config per file"}, nil)
	}
	root := doc.Content[0]
	var problems []string
	// envKeys are the key paths whose value an environment problem left unknown: that
	// problem is the one reported for them (dropKeyProblems).
	var envKeys []string
	unknownValue := func(key string) {
		envKeys = append(envKeys, key)
		cfg.unread = append(cfg.unread, key)
	}
	envProblem := func(n *yaml.Node, problem string) {
		problems = append(problems, path+":"+strconv.Itoa(n.Line)+": "+problem)
	}
	missingEnv := func(n *yaml.Node, key, name string) {
		if key == "" {
			envProblem(n, "environment variable "+name+" is not set")
			return
		}
		unknownValue(key)
		problems = append(problems, path+":"+strconv.Itoa(n.Line)+": "+sayableKey(key)+": environment variable "+name+" is not set")
	}
	report := func(line int, key, problem string) {
		if key == "" {
			problems = append(problems, problem)
			return
		}
		problems = append(problems, path+":"+strconv.Itoa(line)+": "+key+": "+problem)
	}
	malformedEnv := func(n *yaml.Node, key, problem string) {
		if key == "" {
			envProblem(n, problem)
			return
		}
		if problem != keyRefProblem {
			unknownValue(key)
		}
		report(n.Line, sayableKey(key), problem)
	}
	mlflow := isMLflow(root)
	var mlflowRef func(n *yaml.Node, key string)
	if mlflow {
		// A provider's config that is not read names no variable to read.
		skipUnsupportedConfigs(root, true)
		// MLflow's $VAR, read in the same pass as ${VAR}: a value either gives is
		// not read again (a secret that begins with '$' stays the secret).
		mlflowRef = func(n *yaml.Node, key string) { expandMLflowRef(n, key, env, malformedEnv) }
	}
	expandEnv(root, "", env, missingEnv, malformedEnv, mlflowRef)
	nEnv := len(problems)
	// Every section is checked even when a value could not be read (README: validate
	// reports every problem at once); problems[read:] are those found in the values
	// read (an MLflow file's translation, then the checks, from problems[checked:]),
	// of which those about a value already refused are dropped below.
	read, checked := -1, -1
	var translated []string
	if mlflow {
		// A problem of an MLflow entry's translation leaves the backend built from it
		// not the one written: what the checks find in it is that problem again.
		note := func(line int, key, problem string) {
			translated = append(translated, key)
			report(line, key, problem)
		}
		if f, ok := readMLflow(root, cfg, note); ok {
			read = len(problems)
			fromMLflow(f, cfg, note)
			checked = len(problems)
			cfg.applyDefaults()
			problems = append(problems, cfg.problems()...)
		}
	} else {
		checkKeys(root, reflect.TypeOf(Config{}), "", cfg, report)
		decoded, ok := decodeRest(root, cfg, cfg)
		problems = append(problems, decoded...)
		if ok {
			read, checked = len(problems), len(problems)
			cfg.applyDefaults()
			problems = append(problems, cfg.problems()...)
		}
	}
	if len(problems) > 0 {
		if read >= 0 {
			problems = dropKeyProblems(problems, checked, path, refusedKeys(cfg.refused, translated))
			problems = dropKeyProblems(problems, read, path, cfg.refused)
		}
		return nil, newConfigError(dropKeyProblems(problems, nEnv, path, envKeys), cfg.tlsFiles())
	}
	return cfg, nil
}

// twoBOMs reports whether data begins with a byte order mark twice (a tool that adds
// one to a file that has one), in UTF-8 or UTF-16.
func twoBOMs(data []byte) bool {
	for _, bom := range []string{"\xef\xbb\xbf", "\xff\xfe", "\xfe\xff"} {
		if bytes.HasPrefix(data, []byte(bom+bom)) {
			return true
		}
	}
	return false
}

// refusedKeys lists the keys whose problems the section checks would repeat: those
// whose value was refused, and, for each MLflow entry (endpoints[i]) with a problem
// in translation, its model, which the backend is built from. The checks' problems
// inside these keys are dropped too.
func refusedKeys(refused, translated []string) []string {
	keys := slices.Clone(refused)
	for _, k := range translated {
		if k == "" {
			continue
		}
		keys = append(keys, k)
		if strings.HasPrefix(k, "endpoints[") || strings.HasPrefix(k, "routes[") {
			if i := strings.IndexByte(k, ']'); i > 0 {
				keys = append(keys, k[:i+1]+".model")
			}
		}
	}
	return keys
}

// dropKeyProblems drops from problems[from:] those about a key in keys or inside one
// (backends.up.model inside backends.up), for a key that is a list's item those about
// the list itself, and those of a check across keys that reads one of them
// (aboutKey): that key's value was refused or left unknown (an unset variable, a
// malformed reference, a value of the wrong type or with a fraction, read as null),
// and what the checks find wrong with what is left ("is required", base_url required
// without targets, weights that do not add up) is that problem again, already
// reported.
func dropKeyProblems(problems []string, from int, path string, keys []string) []string {
	if len(keys) == 0 {
		return problems
	}
	out := problems[:from]
	for _, p := range problems[from:] {
		if !aboutKey(p, path, keys) {
			out = append(out, p)
		}
	}
	return out
}

// aboutKey reports whether problem, FILE:LINE: key: what, is about one of keys or
// inside it, about the list one of them is an item of, or a check across it. A check
// across keys names the keys it reads, as it must to be acted on: a problem of the
// mapping holding the key (limits[0]: needs exactly one of requests, tokens or
// concurrency), of a key beside it (base_url: is required (or targets)) or of the list
// that mapping is an item of (routes: weights add up to 50) that names the key is that
// check run on the null left in its place. One that does not (an unknown backend
// beside a refused weight) stands on its own and is kept.
func aboutKey(problem, path string, keys []string) bool {
	rest, ok := strings.CutPrefix(problem, path+":")
	if !ok {
		return false
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	rest, ok = strings.CutPrefix(rest[i:], ": ")
	if !ok {
		return false
	}
	key, what, ok := strings.Cut(rest, ": ")
	if !ok {
		return false
	}
	for _, k := range keys {
		if key == k || strings.HasPrefix(key, k) && (key[len(k)] == '.' || key[len(k)] == '[') {
			return true
		}
		if i := strings.LastIndexByte(k, '['); i > 0 && strings.HasSuffix(k, "]") && key == k[:i] {
			return true
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 || strings.HasSuffix(k, "]") {
			continue
		}
		m := k[:i]
		beside := key == m || strings.HasPrefix(key, m+".")
		if j := strings.LastIndexByte(m, '['); j > 0 && strings.HasSuffix(m, "]") && key == m[:j] {
			beside = true
		}
		if beside && namesKey(what, k[i+1:]) {
			return true
		}
	}
	return false
}

// namesKey reports whether text names the key name as a word of its own, or its
// plural (weights for weight).
func namesKey(text, name string) bool {
	if name == "" {
		return false
	}
	word := func(c byte) bool {
		return c == '_' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
	}
	for from := 0; ; {
		i := strings.Index(text[from:], name)
		if i < 0 {
			return false
		}
		i += from
		end := i + len(name)
		if end < len(text) && text[end] == 's' {
			end++
		}
		if (i == 0 || !word(text[i-1])) && (end == len(text) || !word(text[end])) {
			return true
		}
		from = i + 1
	}
}

// keyRefProblem is the problem of a key holding ${.
const keyRefProblem = "a key holds ${: references are read in values only, not in keys"

// envRefHelp ends every message about a malformed reference.
const envRefHelp = "; write ${NAME} or ${NAME:-default}, and $${ for a literal ${"

// expandEnv replaces ${VAR} (and ${VAR:-default}) in scalar values, and $${ with a
// literal ${. It works on the parsed tree, not the text, so a value holding YAML syntax
// stays a plain string and line numbers stay those of the file. path is n's key path,
// for the messages: a malformed reference (${VAR without its brace, ${VAR-x}, ${ VAR })
// is an error rather than text kept as it is, which would end up an API key or a URL.
// other, when set, is given every other scalar value (to read MLflow's $VAR), so that
// each value is expanded once.
func expandEnv(n *yaml.Node, path string, env func(string) (string, bool), missing func(n *yaml.Node, key, name string), malformed func(n *yaml.Node, key, problem string), other func(n *yaml.Node, key string)) {
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "${") {
		v, unset, bad := expandValue(n.Value, env)
		for _, name := range unset {
			missing(n, path, name)
		}
		if bad == "" && len(unset) == 0 && !utf8.ValidString(v) {
			// A YAML file is UTF-8; a variable may hold other bytes, which no name,
			// header or label can carry (a metric label would panic on them).
			bad = "is not valid UTF-8 once its ${} references are read: a variable it names holds other bytes"
		}
		if bad != "" {
			malformed(n, path, bad)
		}
		plain := n.Style == 0
		n.Value = v
		switch {
		case len(unset) > 0 || bad != "":
			// The value is not known: a null leaves the key as if it were not
			// written, rather than a type error for what is left of it (`5${UNSET}s`,
			// an empty duration) hiding the problems of other keys.
			n.Value, n.Tag = "", "!!null"
		case plain && !readsAsNull(v):
			// An unquoted, untagged value is typed by what it holds now, as if the
			// file had held it: `retries: ${RETRIES:-2}` is a number,
			// `access_log: ${LOG}` a boolean. A string key still takes it as text.
			n.Tag = ""
		case plain:
			// One that now reads as null (empty, ~) stays text: the key is not
			// dropped to its default without a word.
			n.Tag = "!!str"
		case n.Tag == "" || n.Tag == "!!null":
			n.Tag = ""
		}
		n.Style = 0
	} else if n.Kind == yaml.ScalarNode && other != nil {
		other(n, path)
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && strings.Contains(k.Value, "${") {
				// A key filled from the environment would be quoted by every message
				// about it (an unknown key, a bad header name): not expanded, and said.
				malformed(k, path, keyRefProblem)
			}
			p := path
			if !isMergeKey(k) {
				// A merge key's mapping holds keys of this one.
				p = join(path, k.Value)
			}
			expandEnv(v, p, env, missing, malformed, other)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			expandEnv(c, path+"["+strconv.Itoa(i)+"]", env, missing, malformed, other)
		}
	default:
		for _, c := range n.Content {
			expandEnv(c, path, env, missing, malformed, other)
		}
	}
}

// readsAsNull reports whether a plain YAML scalar holding v is null.
func readsAsNull(v string) bool {
	switch v {
	case "", "~", "null", "Null", "NULL":
		return true
	}
	return false
}

// expandValue expands the references in one value. It returns the value, the variables
// that are unset with no default, and what is wrong with the first malformed reference
// ("" when none). A variable set but empty takes the default, as in the shell, docker
// compose and envsubst (Kubernetes often sets `value: ""`). The problem never quotes
// the value: it may be a secret (an API key, a header, a URL with a password), and the
// key path and line place it.
func expandValue(s string, env func(string) (string, bool)) (string, []string, string) {
	var b strings.Builder
	var unset []string
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), unset, ""
		}
		if i > 0 && s[i-1] == '$' {
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		s = s[i+2:]
		j := 0
		for j < len(s) && (s[j] == '_' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 'a' && s[j] <= 'z' || j > 0 && s[j] >= '0' && s[j] <= '9') {
			j++
		}
		name, rest := s[:j], s[j:]
		if name == "" {
			return "", nil, "${ is not followed by a variable name" + envRefHelp
		}
		def, hasDef := "", false
		switch {
		case strings.HasPrefix(rest, "}"):
			rest = rest[1:]
		case strings.HasPrefix(rest, ":-"):
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				return "", nil, "${ is not closed by }" + envRefHelp
			}
			def, hasDef, rest = rest[2:end], true, rest[end+1:]
			if strings.Contains(def, "${") {
				return "", nil, "a default must not hold ${ (references do not nest)" + envRefHelp
			}
		case rest == "":
			return "", nil, "${ is not closed by }" + envRefHelp
		default:
			return "", nil, "a variable name in ${...} must be followed by } or :-default" + envRefHelp
		}
		v, ok := env(name)
		switch {
		case ok && (v != "" || !hasDef):
			b.WriteString(v)
		case hasDef:
			b.WriteString(def)
		default:
			unset = append(unset, name)
		}
		s = rest
	}
}

// checkKeys walks the document against the config types, reporting unknown keys with
// their line and recording the line of every key path and the keys given twice.
func checkKeys(n *yaml.Node, t reflect.Type, path string, cfg *Config, report func(int, string, string)) {
	kc := keyChecker{cfg: cfg, report: report, merged: map[mergeAt]bool{}, fractions: &[]*yaml.Node{}, slips: &[]typeFault{}}
	kc.check(n, t, path)
	// A fraction is refused as a value of the wrong type is, and read as null: the
	// decoder's whole part (50 of 50.5) would be checked as if written. Set aside
	// after the walk, so that an anchored one is refused at each alias too.
	for _, f := range *kc.fractions {
		*f = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: f.Line, Column: f.Column}
	}
	// A key run into its value is taken out of its mapping: the decoder's message
	// for one given twice, and the checks of a header name or an MLflow config key
	// after it, would quote it whole.
	for _, f := range *kc.slips {
		f.setAside()
	}
	recordDuplicates(n, path, cfg)
}

// recordDuplicates finds the scalar keys that a mapping gives twice, as yaml.v3's
// decoder does (it compares each mapping's own keys, not those merged in). An anchored
// mapping is walked where it is written, not at each alias: its keys' lines are there.
func recordDuplicates(n *yaml.Node, path string, cfg *Config) {
	switch n.Kind {
	case yaml.MappingNode:
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := path
			if !isMergeKey(k) {
				p = join(path, k.Value)
			}
			if k.Kind == yaml.ScalarNode {
				if seen[k.Value] {
					cfg.dups = append(cfg.dups, dupKey{k.Line, k.Value, join(path, k.Value), n, k})
				}
				seen[k.Value] = true
			}
			recordDuplicates(v, p, cfg)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			recordDuplicates(c, path+"["+strconv.Itoa(i)+"]", cfg)
		}
	}
}

type keyChecker struct {
	cfg    *Config
	report func(int, string, string)
	// merged holds the mappings already merged in at a path. Each is checked there
	// once: an anchor that merges itself (`a: &a {<<: *a}`, which the parser accepts)
	// would recurse forever, and a chain of anchors each merging the one before
	// several times would take exponential time.
	merged map[mergeAt]bool
	// fractions are the numbers with a fraction refused where a whole number belongs.
	fractions *[]*yaml.Node
	// slips are the keys run into their values (slip).
	slips *[]typeFault
}

type mergeAt struct {
	n    *yaml.Node
	path string
}

func (kc keyChecker) check(n *yaml.Node, t reflect.Type, path string) {
	lines := kc.cfg.lines
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	n = deref(n)
	switch {
	case n.Kind == yaml.ScalarNode:
		kc.cfg.scalars[n.Line] = append(kc.cfg.scalars[n.Line], scalarAt{path, n.Value, t.String(), takes(t), n})
		if secretKey(path) && n.Value == "" && (n.Anchor != "" || n.Tag != "" && !strings.HasPrefix(n.Tag, "!!")) {
			// A secret written unquoted that begins with '&' or '!' (a random token
			// or password may): YAML reads an anchor or a tag with no value, and the
			// secret would be empty, as the '*' of an alias is refused.
			kc.report(n.Line, path, "a value that begins with & or ! is read as a YAML anchor or tag, leaving it empty: quote it")
			kc.cfg.refused = append(kc.cfg.refused, path)
		}
		if hasFraction(n, t) {
			// yaml.v3 would cut it to its whole part: max_concurrency: 0.5 would be 0,
			// no cap at all.
			kc.report(n.Line, path, "must be a whole number, not "+n.Value)
			kc.cfg.refused = append(kc.cfg.refused, path)
			*kc.fractions = append(*kc.fractions, n)
		}
	case (n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode) && wrongCollection(n, t):
		// A mapping or list where one value, a list or a section belongs (endpoints
		// written as a mapping of names, auth.keys without dashes): its error names
		// this key.
		kc.cfg.scalars[n.Line] = append(kc.cfg.scalars[n.Line], scalarAt{path, collectionValue, t.String(), takes(t), n})
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode || reflect.PointerTo(t).Implements(unmarshalerType) {
			return
		}
		kc.merges(n, t, path)
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if isMergeKey(k) {
				continue
			}
			if name, ok := runOn(k); ok {
				_, known := fields[name]
				kc.slip(n, k, path, name, known, "unknown key"+suggest(name, fields))
				continue
			}
			f, ok := fields[k.Value]
			if !ok && isNull(v) && secretFieldIn(path, fields) {
				if hint := suggest(k.Value, fields); !strings.HasPrefix(hint, " (did you mean") {
					// A value with its field name left out ({name: a, sk-live-…}), which
					// YAML reads as a key with no value, near no field name: in a mapping
					// that holds a secret it may be one, so it is named by its mapping
					// alone (README: config errors never quote one), and set aside after
					// the walk, as a key run into its value is.
					kc.report(k.Line, path, "holds a value with no field name before it"+hint)
					*kc.slips = append(*kc.slips, typeFault{key: path, m: n, dupK: k})
					continue
				}
			}
			p := join(path, k.Value)
			lines[p] = k.Line
			if !ok {
				if k.Value == "" {
					// An empty key (a bare anchor or "":) still gets its file and line.
					p = join(path, `""`)
				}
				kc.report(k.Line, p, "unknown key"+suggest(k.Value, fields))
				continue
			}
			kc.check(v, f, p)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		kc.merges(n, t, path)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if isMergeKey(k) {
				continue
			}
			// A value an environment problem left unknown reads as null too: that
			// problem is the one said.
			if name, ok := runOn(k); ok && t.Elem().Kind() == reflect.String && isNull(v) && !slices.Contains(kc.cfg.unread, join(path, k.Value)) {
				if secretKey(join(path, name)) && strings.Trim(k.Value[len(name):], " \t=:") == "" {
					// A headers entry of a name alone ({sk-…:} in a flow mapping): a
					// key pasted as the name, maybe, so the name is not quoted.
					kc.report(k.Line, path, providers.HeaderEmptyProblem)
					*kc.slips = append(*kc.slips, typeFault{key: path, m: n, dupK: k})
					continue
				}
				// A headers value or an MLflow provider's config key: any name.
				kc.slip(n, k, path, name, true, "")
				continue
			}
			p := join(path, k.Value)
			lines[p] = k.Line
			kc.check(v, t.Elem(), p)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			lines[p] = c.Line
			kc.check(c, t.Elem(), p)
		}
	}
}

// sayableKey is key, a key path, as a message may say it: an entry of a headers
// mapping whose name is not an HTTP token is said by the mapping's key alone, as its
// other problems are (headerconf): a secret pasted where the value belongs reads as
// such a name.
func sayableKey(key string) string {
	i := strings.Index(key, ".headers.")
	if i < 0 {
		return key
	}
	if name := key[i+len(".headers."):]; httpguts.ValidHeaderFieldName(name) {
		return key
	}
	return key[:i+len(".headers")]
}

// runOn reports the name a mapping key begins with when a space, a tab, '=' or ':'
// follows it: a field and its value written without ": " between them ({name: a, key
// sk-live-…}, key=…, key:…), which YAML reads as one key with no value. No field
// name holds one of those bytes.
func runOn(k *yaml.Node) (string, bool) {
	if k.Kind != yaml.ScalarNode {
		return "", false
	}
	i := strings.IndexAny(k.Value, " \t=:")
	if i <= 0 {
		return "", false
	}
	return k.Value[:i], true
}

// slip reports key k of mapping n, run into its value (runOn), by the name it begins
// with alone: the rest may be a secret (README: config errors never quote one). A
// known name is "written without ": " after it", its value refused, so that what the
// checks find missing there is not said again; another gets unknown. The key is set
// aside after the walk.
func (kc keyChecker) slip(n, k *yaml.Node, path, name string, known bool, unknown string) {
	p := join(path, name)
	if known {
		kc.report(k.Line, p, `written without ": " after it`)
		kc.cfg.refused = append(kc.cfg.refused, p)
	} else {
		kc.report(k.Line, p, unknown)
	}
	*kc.slips = append(*kc.slips, typeFault{key: p, m: n, dupK: k})
}

// secretFieldIn reports whether the mapping at path, of the fields given, has a field
// that holds a secret (secretKey): a client key, a backend's api_key, the admin token.
func secretFieldIn[V any](path string, fields map[string]V) bool {
	for name := range fields {
		if secretKey(join(path, name)) {
			return true
		}
	}
	return false
}

// isNull reports whether n is a value left out, as YAML reads a key with no ": ".
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" && n.Value == ""
}

// merges checks the mappings that a merge key (`<<: *base`, `<<: [*a, *b]`) brings
// into mapping n against n's own type and path, as yaml.v3 decodes them. They are
// checked before n's own keys and the list from its end, so the line recorded for a
// key is that of the value the decoder keeps: n's own keys win, then the earlier
// mapping of a list.
func (kc keyChecker) merges(n *yaml.Node, t reflect.Type, path string) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !isMergeKey(k) {
			continue
		}
		var list []*yaml.Node
		switch deref(v).Kind {
		case yaml.MappingNode:
			list = []*yaml.Node{v}
		case yaml.SequenceNode:
			list = deref(v).Content
		}
		ok := len(list) > 0
		for _, m := range list {
			ok = ok && deref(m).Kind == yaml.MappingNode
		}
		if !ok {
			kc.report(k.Line, join(path, k.Value), "must be a mapping, an alias of one, or a list of them")
			kc.dropMerge(n, k, path)
			continue
		}
		if name := selfMerge(list, k); name != "" {
			kc.report(k.Line, join(path, k.Value), "*"+name+" is the mapping this merge key is in, or holds it: a mapping cannot merge itself")
			kc.dropMerge(n, k, path)
			continue
		}
		for j := len(list) - 1; j >= 0; j-- {
			at := mergeAt{deref(list[j]), path}
			if kc.merged[at] {
				continue
			}
			kc.merged[at] = true
			kc.check(at.n, t, path)
		}
	}
}

// dropMerge takes refused merge key k out of mapping n after the walk: yaml.v3 would
// stop at it with an error naming no line or key, and the rest of the file would go
// unchecked. n, at path, is then checked without what the merge would have brought:
// what the checks find missing in it (a provider, a model) is that problem again.
func (kc keyChecker) dropMerge(n, k *yaml.Node, path string) {
	*kc.slips = append(*kc.slips, typeFault{key: join(path, k.Value), m: n, dupK: k})
	kc.cfg.refused = append(kc.cfg.refused, path)
}

// selfMerge is the anchor of the first alias in list whose mapping holds merge key k
// (the mapping k is in, or one around it), "" when none does. yaml.v3 decodes such a
// merge into itself until it notices the loop ("value contains itself").
func selfMerge(list []*yaml.Node, k *yaml.Node) string {
	for _, m := range list {
		if m.Kind == yaml.AliasNode && m.Alias != nil && holds(m.Alias, k) {
			return m.Value
		}
	}
	return ""
}

// holds reports whether node k is n or under it, not through aliases.
func holds(n, k *yaml.Node) bool {
	if n == k {
		return true
	}
	for _, c := range n.Content {
		if holds(c, k) {
			return true
		}
	}
	return false
}

// hasFraction reports whether n is a number with a fraction (2.7, 5e-1) and t a
// whole-number type. A float with none (2.0, 1e3) is taken as that number, as yaml.v3
// takes it; one too large for t (1e30) is the decoder's error; a duration or a Size
// reads the value itself.
func hasFraction(n *yaml.Node, t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
	default:
		return false
	}
	if t == durationType || reflect.PointerTo(t).Implements(unmarshalerType) || n.ShortTag() != "!!float" {
		return false
	}
	var f float64
	if n.Decode(&f) != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return false
	}
	return f != math.Trunc(f)
}

// isMergeKey tells a YAML merge key from a key spelled "<<" in quotes, as yaml.v3 does.
func isMergeKey(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Value == "<<" && (k.Tag == "" || k.Tag == "!" || k.ShortTag() == "!!merge")
}

func deref(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

// suggest is the hint after "unknown key": the known key within two edits of key, or
// the list of known keys.
func suggest[V any](key string, known map[string]V) string {
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
	}
	sort.Strings(names)
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(key, n); d < bestD {
			best, bestD = n, d
		}
	}
	if best != "" {
		return " (did you mean " + best + "?)"
	}
	return " (known keys: " + strings.Join(names, ", ") + ")"
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev = cur
	}
	return prev[len(b)]
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlProblem turns a yaml.v3 error into FILE:LINE: what. data is the file's text,
// to place the errors that carry no line (nil when there is none to read).
func yamlProblem(path string, data []byte, err error) string {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		if !isParserProblem(m[2]) {
			if m[2] == "found character that cannot start any token" && tabIndents(data, m[1]) {
				// The character is a tab, which most editors do not show.
				return path + ":" + m[1] + ": " + m[2] + " (a tab indents this line: YAML indents with spaces)"
			}
			return path + ":" + m[1] + ": " + m[2]
		}
		line := parserLine(m[1], data)
		what := ""
		switch m[2] {
		case "did not find expected key":
			what = "mapping"
		case "did not find expected '-' indicator":
			what = "list"
		}
		if what != "" {
			if at := mistakeLine(data, msg, line); at > line {
				return path + ":" + strconv.Itoa(at) + ": " + m[2] + " (in the " + what + " that begins on line " + strconv.Itoa(line) + ")"
			}
		}
		return path + ":" + strconv.Itoa(line) + ": " + m[2] + flowRefHint(data, line, m[2])
	}
	if p := strings.TrimPrefix(msg, "yaml: "); isParserProblem(p) {
		// yaml.v3 leaves out the line when both of the parser's marks are on the
		// first one.
		return path + ":1: " + p + flowRefHint(data, 1, p)
	}
	if m := yamlUnknownAnchor.FindStringSubmatch(msg); m != nil && data != nil {
		return anchorProblem(path, data, m[1])
	}
	p := strings.TrimPrefix(msg, "yaml: ")
	if isReaderProblem(p) {
		if line := badCharLine(data); line > 0 {
			return path + ":" + strconv.Itoa(line) + ": " + p
		}
	} else if data != nil {
		// A scanner problem on the first line: yaml.v3 leaves out a line 0. (Those
		// of the decoder, with no line of their own, come with data nil.)
		return yamlProblem(path, data, errors.New("line 1: "+p))
	}
	return path + ": " + p
}

// flowRefHint says where the unquoted ${ is when a mapping in braces or a list in
// brackets that begins on line l of data holds one: YAML ends an unquoted value at its
// '{', and yaml.v3 words that as a missing ',' at the line the braces open.
func flowRefHint(data []byte, l int, problem string) string {
	if problem != "did not find expected ',' or '}'" && problem != "did not find expected ',' or ']'" {
		return ""
	}
	if at := unquotedRefInFlow(data, l); at > 0 {
		return " (an unquoted ${ on line " + strconv.Itoa(at) + `: inside { } or [ ] write "${VAR}", or the key on a line of its own)`
	}
	return ""
}

// unquotedRefInFlow is the line of the first ${ outside quotes and comments within the
// flow collection that begins on line l of data (1-based), 0 when there is none.
func unquotedRefInFlow(data []byte, l int) int {
	i, _, ok := lineSpan(data, l)
	if !ok {
		return 0
	}
	line, depth := l, 0
	var quote byte
	for ; i < len(data); i++ {
		c := data[i]
		switch {
		case c == '\n':
			if depth == 0 {
				return 0
			}
			line++
		case quote == '"':
			if c == '\\' {
				i++
			} else if c == '"' {
				quote = 0
			}
		case quote == '\'':
			if c == '\'' {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#' && (i == 0 || data[i-1] == ' ' || data[i-1] == '\t'):
			for i+1 < len(data) && data[i+1] != '\n' {
				i++
			}
		case c == '$' && depth > 0 && i+1 < len(data) && data[i+1] == '{':
			return line
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			if depth--; depth <= 0 {
				return 0
			}
		}
	}
	return 0
}

// tabIndents reports whether line l (1-based, as yaml.v3's scanner gives it) of data
// has a tab in its indentation: before its first character other than a space or a
// list's '-'.
func tabIndents(data []byte, l string) bool {
	n, err := strconv.Atoi(l)
	if err != nil {
		return false
	}
	start, end, ok := lineSpan(data, n)
	if !ok {
		return false
	}
	for _, c := range data[start:end] {
		switch c {
		case ' ', '-':
		case '\t':
			return true
		default:
			return false
		}
	}
	return false
}

// isReaderProblem reports whether p is one of yaml.v3's reader's problems
// (gopkg.in/yaml.v3 v3.0.1 readerc.go): a byte sequence not of the file's encoding, or
// a character YAML does not allow. It gives them with no line.
func isReaderProblem(p string) bool {
	switch p {
	case "invalid leading UTF-8 octet",
		"incomplete UTF-8 octet sequence",
		"invalid trailing UTF-8 octet",
		"invalid length of a UTF-8 sequence",
		"invalid Unicode character",
		"incomplete UTF-16 character",
		"unexpected low surrogate area",
		"incomplete UTF-16 surrogate pair",
		"expected low surrogate area",
		"control characters are not allowed":
		return true
	}
	return false
}

// badCharLine is the line of the first character of data that yaml.v3's reader
// refuses (0 if none): a Latin-1 byte saved by an editor, a control character from a
// paste. data is UTF-16 when it begins with its byte order mark, as the reader takes
// it, and UTF-8 otherwise. Lines are counted as YAML breaks them: CR LF, CR, LF, NEL,
// LS and PS each end one.
func badCharLine(data []byte) int {
	next := func(b []byte) (rune, int) {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 {
			return -1, n
		}
		return r, n
	}
	if len(data) >= 2 && (data[0] == 0xff && data[1] == 0xfe || data[0] == 0xfe && data[1] == 0xff) {
		le := data[0] == 0xff
		unit := func(b []byte) rune {
			if le {
				return rune(b[0]) | rune(b[1])<<8
			}
			return rune(b[0])<<8 | rune(b[1])
		}
		next = func(b []byte) (rune, int) {
			if len(b) < 2 {
				return -1, len(b)
			}
			r := unit(b)
			if !utf16.IsSurrogate(r) {
				return r, 2
			}
			if r >= 0xdc00 || len(b) < 4 {
				return -1, 2
			}
			if r = utf16.DecodeRune(r, unit(b[2:])); r == utf8.RuneError {
				return -1, 2
			}
			return r, 4
		}
		data = data[2:]
	}
	line := 1
	for i := 0; i < len(data); {
		r, n := next(data[i:])
		switch {
		case r == '\r' && i+n < len(data):
			// CR LF is one break: counted at the LF.
			if r2, _ := next(data[i+n:]); r2 != '\n' {
				line++
			}
		case r == '\r', r == '\n', r == 0x85, r == 0x2028, r == 0x2029:
			line++
		case !yamlChar(r):
			return line
		}
		i += n
	}
	return 0
}

// yamlChar reports whether YAML allows r in a file (YAML 1.2, 5.1, as yaml.v3 checks
// it); -1, a byte sequence not of the encoding, is not.
func yamlChar(r rune) bool {
	return r == 0x09 || r == 0x0a || r == 0x0d || r >= 0x20 && r <= 0x7e || r == 0x85 ||
		r >= 0xa0 && r <= 0xd7ff || r >= 0xe000 && r <= 0xfffd || r >= 0x10000 && r <= 0x10ffff
}

// isParserProblem reports whether a yaml.v3 problem is one of its parser's
// (gopkg.in/yaml.v3 v3.0.1 parserc.go) rather than its scanner's: parser.fail gives a
// parser problem's line 0-based, and the scanner's 1-based. The text is all its error
// holds to tell them apart; TestConfigYAMLParserProblemLines has a case of each.
func isParserProblem(p string) bool {
	switch p {
	case "did not find expected <stream-start>",
		"did not find expected <document start>",
		"found undefined tag handle",
		"did not find expected node content",
		"did not find expected '-' indicator",
		"did not find expected key",
		"did not find expected ',' or ']'",
		"did not find expected ',' or '}'",
		"found duplicate %YAML directive",
		"found incompatible YAML document",
		"found duplicate %TAG directive":
		return true
	}
	return false
}

// parserLine is the 1-based line of a parser problem that yaml.v3 reports on 0-based
// line l: where the node it was parsing starts or, when there is none or it starts on
// the first line, the token it stopped at. That token may be the end of the file,
// which yaml.v3 puts on the line after the last line break: it is placed on the last
// line instead.
func parserLine(l string, data []byte) int {
	n, _ := strconv.Atoi(l)
	n++
	last := 0
	if len(data) > 0 && !isUTF16(data) {
		last = len(lineEnds(data))
	} else if len(data) > 0 {
		last = bytes.Count(data, []byte{'\n'})
		if data[len(data)-1] != '\n' {
			last++
		}
	}
	if last > 0 && n > last {
		n = last
	}
	return n
}

// isUTF16 reports whether data begins with a UTF-16 byte order mark, which makes
// yaml.v3 read it as UTF-16.
func isUTF16(data []byte) bool {
	return len(data) >= 2 && (data[0] == 0xff && data[1] == 0xfe || data[0] == 0xfe && data[1] == 0xff)
}

// mistakeLine is the line of the token at which a block mapping or list (begun on
// line from) found no key or '-': yaml.v3 gives only the line where the collection
// begins, which may be dozens of lines above. msg is its error for the whole of data.
// The parser reads the file in order, and a block collection cut at a line break is
// complete, so the first lines of data fail with msg from the mistake's line on and
// parse before it: the line is the fewest lines that fail so, found by bisection.
// A UTF-16 file is not cut; from is returned.
func mistakeLine(data []byte, msg string, from int) int {
	if isUTF16(data) {
		return from
	}
	ends := lineEnds(data)
	if from < 1 || from > len(ends) {
		return from
	}
	fails := func(lines int) bool { return firstYAMLError(data[:ends[lines-1]]) == msg }
	n := from + sort.Search(len(ends)-from+1, func(i int) bool { return fails(from + i) })
	if n > len(ends) {
		return from
	}
	return n
}

// lineSpan is where 1-based line n of data begins and ends (lineEnds, its line break
// included); ok is false for a UTF-16 file, or a line data does not have.
func lineSpan(data []byte, n int) (start, end int, ok bool) {
	if n < 1 || isUTF16(data) {
		return 0, 0, false
	}
	ends := lineEnds(data)
	if n > len(ends) {
		return 0, 0, false
	}
	if n > 1 {
		start = ends[n-2]
	}
	return start, ends[n-1], true
}

// lineEnds lists where each line of UTF-8 data ends, its line break included, as
// yaml.v3 counts lines: CR LF, CR, LF, NEL, LS and PS each end one. The last entry
// is len(data).
func lineEnds(data []byte) []int {
	var ends []int
	for i := 0; i < len(data); i++ {
		switch {
		case data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n':
			i++
			ends = append(ends, i+1)
		case data[i] == '\r', data[i] == '\n':
			ends = append(ends, i+1)
		case bytes.HasPrefix(data[i:], []byte("\u0085")), bytes.HasPrefix(data[i:], []byte("\u2028")), bytes.HasPrefix(data[i:], []byte("\u2029")):
			_, size := utf8.DecodeRune(data[i:])
			i += size - 1
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] < len(data) {
		ends = append(ends, len(data))
	}
	return ends
}

// firstYAMLError is the message of the first error in parsing data's documents, ""
// when there is none.
func firstYAMLError(data []byte) string {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if err == io.EOF {
			return ""
		}
		if err != nil {
			return err.Error()
		}
	}
}

// yaml.v3's anchor names are letters, digits, '_' and '-'.
var yamlUnknownAnchor = regexp.MustCompile(`^(?:yaml: )?unknown anchor '([0-9A-Za-z_-]+)' referenced$`)

// anchorProblem places an alias of an anchor not defined before it (`<<: *defualts`,
// a misspelling), which yaml.v3 reports with no line. Each `*name` of the text is
// read as a null instead; the first that then parses as a value (not text in a
// string or a comment) is the alias, and the walk to it gives its key path.
func anchorProblem(path string, data []byte, name string) string {
	alias := "*" + name
	text := bytes.Clone(data)
	type mark struct{ line, col int }
	marks := map[mark]bool{}
	first := mark{}
	line, lineStart := 1, 0 // the line of data[off:] and where it starts
	for off := 0; ; {
		i := bytes.Index(text[off:], []byte(alias))
		if i < 0 {
			break
		}
		i += off
		line += bytes.Count(data[off:i], []byte{'\n'})
		if nl := bytes.LastIndexByte(data[off:i], '\n'); nl >= 0 {
			lineStart = off + nl + 1
		}
		off = i + len(alias)
		if i > 0 && !strings.ContainsRune(" \t\r\n[{,", rune(data[i-1])) ||
			off < len(text) && isAnchorChar(text[off]) {
			continue
		}
		text[i] = '~'
		for j := i + 1; j < off; j++ {
			text[j] = ' '
		}
		m := mark{line, 1 + utf8.RuneCount(data[lineStart:i])}
		if len(marks) == 0 {
			first = m
		}
		marks[m] = true
	}
	problem := alias + " refers to no anchor &" + name + " defined before it"
	if len(marks) == 0 {
		return path + ": " + problem
	}
	anchors := map[string]bool{}
	key, line := "", first.line
	found := false
	var walk func(n *yaml.Node, p string)
	walk = func(n *yaml.Node, p string) {
		if n.Anchor != "" {
			anchors[n.Anchor] = true
		}
		if !found && n.Kind == yaml.ScalarNode && n.Value == "~" && marks[mark{n.Line, n.Column}] {
			found, key, line = true, p, n.Line
		}
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				walk(k, p)
				if !isMergeKey(k) {
					walk(v, join(p, k.Value))
				} else {
					walk(v, p)
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, p+"["+strconv.Itoa(i)+"]")
			}
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, p)
			}
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(text))
	for {
		var doc yaml.Node
		if dec.Decode(&doc) != nil {
			break
		}
		walk(&doc, "")
	}
	if hint := suggest(name, anchors); len(anchors) > 0 && strings.HasPrefix(hint, " (did you mean ") {
		problem += hint
	}
	at := path + ":" + strconv.Itoa(line) + ": "
	if key == "" {
		return at + problem
	}
	if secretKey(key) {
		// A secret written unquoted that begins with '*' (a random token or password
		// may): the alias's name is the secret.
		return at + key + ": a value that begins with * is read as a YAML alias (to no anchor): quote it"
	}
	return at + key + ": " + problem
}

// secretKey reports whether the value at key path p is a secret, which a message about
// it must not quote: a backend's api_key (MLflow's openai_api_key …), a headers value,
// a client's key or its sha256, the admin token, the Redis URL and password.
func secretKey(p string) bool {
	switch p {
	case "server.admin_token", "limiter.redis.url", "limiter.redis.password", "auth.response_secret", "auth.previous_response_secret":
		return true
	}
	last := p[strings.LastIndexByte(p, '.')+1:]
	return strings.HasSuffix(last, "api_key") ||
		strings.HasPrefix(p, "headers.") || strings.Contains(p, ".headers.") ||
		strings.HasPrefix(p, "auth.keys[") && (last == "key" || last == "sha256") && strings.Count(p, ".") == 2
}

func isAnchorChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '_' || c == '-'
}

var yamlDuplicate = regexp.MustCompile(`^mapping key ("(?:[^"\\]|\\.)*") already defined at line \d+$`)

// collectionValue stands for the value of a mapping or list recorded in Config.scalars.
const collectionValue = "\x00collection"

// scalarType reports whether t takes one value, not a mapping or a list.
func scalarType(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// wrongCollection reports whether the mapping or list n is not what type t decodes
// from.
func wrongCollection(n *yaml.Node, t reflect.Type) bool {
	switch {
	case scalarType(t):
		return true
	case t.Kind() == reflect.Struct, t.Kind() == reflect.Map:
		return n.Kind != yaml.MappingNode
	case t.Kind() == reflect.Slice, t.Kind() == reflect.Array:
		return n.Kind != yaml.SequenceNode
	}
	return false
}

// yamlUnmarshal matches yaml.v3's message for a value of the wrong kind: its tag, the
// value if one value, and the Go type it was decoded into.
var yamlUnmarshal = regexp.MustCompile("^cannot unmarshal (!\\S*)(?: `(.*)`)? into (\\S+)$")

// yamlTags says in words what a value of a tag yaml.v3 resolved is.
var yamlTags = map[string]string{
	"!!str": "a string", "!!int": "a number", "!!float": "a number", "!!bool": "a boolean",
	"!!timestamp": "a date", "!!binary": "binary data", "!!map": "a mapping", "!!seq": "a list",
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	sizeType     = reflect.TypeOf(Size(0))
	configType   = reflect.TypeOf(Config{})
)

// takes says what a key of Go type t takes, for a message.
func takes(t reflect.Type) string {
	switch t {
	case durationType:
		return "a duration (e.g. 100ms, 30s, 5m)"
	case sizeType:
		return "a size (e.g. 8MiB, 512KB, 1048576)"
	case configType:
		return "a mapping of sections (server, auth, backends, endpoints, limiter, tracing, logging)"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "a mapping"
	}
	return "a number"
}

// decodeRest decodes root into v, a pointer. A value the decoder refuses (one of the
// wrong type, a key given twice, one its explicit tag does not fit) is a problem of
// its key, and the rest of the file is still read, so that it can be checked too:
// each such value is set aside (read as null, as an unset variable's is; a key given
// twice, once) and root decoded again, over what the earlier passes left in v. It
// returns the problems, and whether v holds the rest of the file: not when a problem
// could not be placed at a key (the whole file of the wrong kind). The keys set aside
// go to cfg.refused.
func decodeRest(root *yaml.Node, cfg *Config, v any) ([]string, bool) {
	var problems []string
	// Every pass sets aside at least one value, or stops: the passes are at most
	// one more than the values.
	for {
		err := root.Decode(v)
		if err == nil {
			return problems, true
		}
		var faults []typeFault
		if te, ok := errors.AsType[*yaml.TypeError](err); ok {
			var found []string
			found, faults = typeProblems(cfg, te)
			problems = appendNew(problems, found...)
		} else {
			// yaml.v3 stops at a value its tag does not fit, dropping the type
			// errors it had found: those come in the next pass.
			var p string
			p, faults = tagProblem(cfg, root, err)
			problems = appendNew(problems, p)
		}
		moved := false
		for _, f := range faults {
			moved = f.setAside() || moved
			cfg.refused = append(cfg.refused, f.key)
		}
		if !moved {
			return problems, false
		}
	}
}

// appendNew appends to list the problems it does not hold yet: a value placed at
// another key than its own is found again in the next pass.
func appendNew(list []string, problems ...string) []string {
	for _, p := range problems {
		if !slices.Contains(list, p) {
			list = append(list, p)
		}
	}
	return list
}

// typeFault is the value of a decode problem: the key path, and the value node or,
// for a key given twice, the mapping and that key node.
type typeFault struct {
	key     string
	value   *yaml.Node
	m, dupK *yaml.Node
}

// setAside makes the fault's value one the decoder takes: null, which leaves the key
// as if it were not written, or, for a key given twice, the mapping without it. It
// reports whether that changed the document (not when the value was set aside
// already).
func (f typeFault) setAside() bool {
	if f.m == nil {
		if f.value.Kind == yaml.ScalarNode && f.value.Tag == "!!null" && f.value.Value == "" {
			return false
		}
		*f.value = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: f.value.Line, Column: f.value.Column}
		return true
	}
	for i := 0; i+1 < len(f.m.Content); i += 2 {
		if f.m.Content[i] == f.dupK {
			f.m.Content = slices.Delete(f.m.Content, i, i+2)
			return true
		}
	}
	return false
}

// typeProblems turns yaml.v3's decode errors into FILE:LINE: key: what, with the
// values at fault; those are nil unless every problem is placed at a key.
func typeProblems(cfg *Config, te *yaml.TypeError) ([]string, []typeFault) {
	path, scalars := cfg.path, cfg.scalars
	out := make([]string, 0, len(te.Errors))
	faults := make([]typeFault, 0, len(te.Errors))
	placed := true
	// used marks the scalars already named, so two bad values alike on one line name
	// their own keys in turn: yaml.v3 reports them in document order, as recorded.
	used := map[scalarAt]bool{}
	usedDups := map[int]bool{}
	for _, e := range te.Errors {
		m := yamlLine.FindStringSubmatch(e)
		if m == nil {
			out = append(out, path+": "+e)
			placed = false
			continue
		}
		l, _ := strconv.Atoi(m[1])
		if d := yamlDuplicate.FindStringSubmatch(m[2]); d != nil {
			p, dup := duplicateProblem(cfg, l, d[1], m[2], usedDups)
			out = append(out, p)
			if dup == nil {
				placed = false
			} else {
				faults = append(faults, typeFault{key: dup.path, m: dup.m, dupK: dup.k})
			}
			continue
		}
		value := ""
		if i := strings.IndexByte(m[2], '`'); i >= 0 {
			if j := strings.IndexByte(m[2][i+1:], '`'); j >= 0 {
				value = m[2][i+1 : i+1+j]
			}
		}
		// The type the value was decoded into tells apart values that look alike in
		// the message ("unlimit..." may be a model name and a connection count).
		into := ""
		if i := strings.LastIndex(m[2], " into "); i >= 0 {
			into = m[2][i+len(" into "):]
		}
		u := yamlUnmarshal.FindStringSubmatch(m[2])
		var at *scalarAt
		if u != nil && (u[1] == "!!map" || u[1] == "!!seq") {
			// A mapping or list where one value, a list or a section belongs.
			for i, sa := range scalars[l] {
				if sa.value == collectionValue && sa.typ == into && !used[sa] {
					used[sa], at = true, &scalars[l][i]
					break
				}
			}
		} else {
			for _, typed := range []bool{true, false} {
				for i, sa := range scalars[l] {
					if sa.value == collectionValue || !quotes(value, sa.value) || typed && sa.typ != into {
						continue
					}
					at = &scalars[l][i]
					if !used[sa] {
						used[sa] = true
						break
					}
				}
				if at != nil {
					break
				}
			}
			if at == nil && len(scalars[l]) > 0 {
				at = &scalars[l][0]
			}
		}
		problem := m[2]
		switch {
		case into == "time.Duration" && value != "":
			problem = "cannot use `" + value + "` as a duration (use e.g. 100ms, 30s, 5m, 1h)"
		case u != nil:
			// A value of the wrong kind is said in words, as what the key takes: the
			// message names Go types. The value itself is left out: it may be a
			// secret ${VAR} filled in (a key written where a mapping belongs).
			what := yamlTags[u[1]]
			if what == "" {
				what = "a value tagged " + u[1]
			}
			switch {
			case at == nil || at.typ != into:
				problem = "must not be " + what
			case at.want == what:
				// A number where a whole number belongs: 1e30, .inf.
				problem = "must be a whole number between -2^63 and 2^63 − 1"
			default:
				problem = "must be " + at.want + ", not " + what
			}
		case value != "" && strings.HasPrefix(problem, "cannot unmarshal "):
			problem = strings.Replace(problem, " `"+value+"`", "", 1)
		}
		switch {
		case at == nil:
			out = append(out, path+":"+m[1]+": "+problem)
			placed = false
		case at.path == "":
			// The whole document.
			out = append(out, path+":"+m[1]+": the file "+problem)
			placed = false
		default:
			out = append(out, path+":"+m[1]+": "+at.path+": "+problem)
			faults = append(faults, typeFault{key: at.path, value: at.node})
		}
	}
	if !placed {
		return out, nil
	}
	return out, faults
}

// yamlTagMismatch matches yaml.v3's message for a value its explicit tag does not fit
// (`api_key: !!bool Rk9v...`): it has no line and quotes the value.
var yamlTagMismatch = regexp.MustCompile("^(?:yaml: )?cannot decode (!!\\S+) `(.*)` as a (!!\\S+)$")

// yamlBadBinary is yaml.v3's message for a !!binary value that is not base64: it has
// neither line nor value.
const yamlBadBinary = "yaml: !!binary value contains invalid base64 data"

// tagProblem places a value that stopped the decoder, one its explicit tag does not
// fit or a !!binary one that is not base64: the first scalar of the document (in its
// order) that fails to decode alone with the same error, at the key it is read at
// (the first, for an anchored value read at several) or else the key it is written
// at. The value is left out if any of those keys is a secret (secretKey). It returns
// the problem and the value to set aside at each of its keys, none if it was not
// found or is the whole file.
func tagProblem(cfg *Config, root *yaml.Node, err error) (string, []typeFault) {
	msg := err.Error()
	m := yamlTagMismatch.FindStringSubmatch(msg)
	if m == nil && msg != yamlBadBinary {
		if strings.TrimPrefix(msg, "yaml: ") == yamlExcessiveAliasing {
			if n, key := aliasBomb(root); n != nil {
				at := cfg.path + ":" + strconv.Itoa(n.Line) + ": "
				if key != "" {
					at += key + ": "
				}
				return at + "the document's aliases expand to too many values (a YAML bomb?)", nil
			}
		}
		return yamlProblem(cfg.path, nil, err), nil
	}
	n, key := failingScalar(root, "", msg)
	if n == nil {
		if m == nil {
			return cfg.path + ": a value tagged !!binary is not base64: remove the tag", nil
		}
		return cfg.path + ": a value tagged " + m[3] + " is not one: remove the tag", nil
	}
	var faults []typeFault
	secret := secretKey(key)
	// The recorded scalars of a line are in document order.
	for _, sa := range cfg.scalars[n.Line] {
		if sa.node == n {
			faults = append(faults, typeFault{key: sa.path, value: n})
			secret = secret || secretKey(sa.path)
		}
	}
	if len(faults) > 0 {
		key = faults[0].key
	} else if key != "" {
		faults = []typeFault{{key: key, value: n}}
	}
	var problem string
	switch {
	case m == nil:
		problem = "is tagged !!binary, but is not base64: remove the tag"
	case secret:
		problem = "is tagged " + m[3] + ", which the value is not: remove the tag"
	default:
		problem = "cannot decode " + m[1] + " `" + m[2] + "` as a " + m[3]
	}
	at := cfg.path + ":" + strconv.Itoa(n.Line) + ": "
	if key == "" {
		// The whole document: nothing is left to check.
		return at + problem, nil
	}
	return at + key + ": " + problem, faults
}

// yamlExcessiveAliasing is yaml.v3's message for a document whose aliases expand to
// far more values than it holds (a "billion laughs"); it names no line.
const yamlExcessiveAliasing = "document contains excessive aliasing"

// aliasBudget is about how many values yaml.v3 decodes before it starts to judge a
// document's aliasing excessive (its allowedAliasRatio falls from 400000 on).
const aliasBudget = 400000

// aliasBomb finds, in document order, the alias at which the values that the aliases
// read so far expand to pass aliasBudget, and its key path: where the document's
// expansion gets out of hand. It returns nil when none does.
func aliasBomb(root *yaml.Node) (*yaml.Node, string) {
	sizes := map[*yaml.Node]int64{}
	var total int64
	var walk func(n *yaml.Node, path string) (*yaml.Node, string)
	walk = func(n *yaml.Node, path string) (*yaml.Node, string) {
		switch n.Kind {
		case yaml.AliasNode:
			if n.Alias != nil {
				total += expandedSize(n.Alias, sizes)
				if total > aliasBudget {
					return n, path
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if a, ap := walk(v, join(path, k.Value)); a != nil {
					if isMergeKey(k) {
						// Named as the merge checks name it, not by list index.
						ap = join(path, k.Value)
					}
					return a, ap
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				if a, ap := walk(c, path+"["+strconv.Itoa(i)+"]"); a != nil {
					return a, ap
				}
			}
		}
		return nil, ""
	}
	return walk(root, "")
}

// expandedSize is the number of values n stands for with its aliases expanded,
// counted up to just over aliasBudget. sizes holds those already counted.
func expandedSize(n *yaml.Node, sizes map[*yaml.Node]int64) int64 {
	if s, ok := sizes[n]; ok {
		return s
	}
	// An anchor that holds an alias of itself counts once.
	sizes[n] = 1
	s := int64(1)
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		s = expandedSize(n.Alias, sizes)
	} else {
		for _, c := range n.Content {
			if s += expandedSize(c, sizes); s > aliasBudget {
				s = aliasBudget + 1
				break
			}
		}
	}
	sizes[n] = s
	return s
}

// failingScalar finds, in document order, the first scalar under n (a key or a value,
// not through aliases) that fails to decode alone with the error message msg, and its
// key path (n's is path).
func failingScalar(n *yaml.Node, path, msg string) (*yaml.Node, string) {
	switch n.Kind {
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil && err.Error() == msg {
			return n, path
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := path
			if !isMergeKey(k) {
				p = join(path, k.Value)
			}
			if f, fp := failingScalar(k, p, msg); f != nil {
				return f, fp
			}
			if f, fp := failingScalar(v, p, msg); f != nil {
				return f, fp
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if f, fp := failingScalar(c, path+"["+strconv.Itoa(i)+"]", msg); f != nil {
				return f, fp
			}
		}
	}
	return nil, ""
}

// duplicateProblem is the decoder's message that a mapping key (quoted in Go syntax, as
// the message has it) is given again at line, with the key path it was given at, and
// that key (nil when it is not found). used marks the keys already named: two mappings
// on one line may repeat the same key, and the decoder reports them in document order,
// as they were recorded.
func duplicateProblem(cfg *Config, line int, quoted, problem string, used map[int]bool) (string, *dupKey) {
	at := cfg.path + ":" + strconv.Itoa(line) + ": "
	key, err := strconv.Unquote(quoted)
	if err != nil {
		return at + problem, nil
	}
	found := -1
	for i, d := range cfg.dups {
		if d.line == line && d.key == key {
			if found < 0 {
				found = i
			}
			if !used[i] {
				found = i
				break
			}
		}
	}
	if found < 0 {
		return at + problem, nil
	}
	used[found] = true
	return at + cfg.dups[found].path + ": " + problem, &cfg.dups[found]
}

// quotes tells whether quoted, a value as a yaml.v3 decode error shows it, is value:
// the decoder shortens a value over 10 bytes to its first 7 and "...".
func quotes(quoted, value string) bool {
	if quoted == value {
		return true
	}
	short, ok := strings.CutSuffix(quoted, "...")
	return ok && len(short) == 7 && len(value) > 10 && strings.HasPrefix(value, short)
}

func (c *Config) applyDefaults() {
	s := &c.Server
	if s.Listen == "" {
		s.Listen = ":8080"
	}
	if s.AdminListen == "" {
		s.AdminListen = "127.0.0.1:9090"
	}
	// A zero written is not the key left out: shutdown_grace: 0s stops at once, and
	// the others are refused (problems), rather than turned into the default.
	if s.MaxBodyBytes == 0 && !c.holds("server.max_body_bytes") {
		s.MaxBodyBytes = 8 << 20
	}
	if s.MaxBufferedBytes == 0 && !c.holds("server.max_buffered_bytes") {
		s.MaxBufferedBytes = defaultMaxBuffered(s.MaxBodyBytes, debug.SetMemoryLimit(-1))
	}
	if s.ShutdownGrace == 0 && !c.holds("server.shutdown_grace") {
		s.ShutdownGrace = 30 * time.Second
	}
	if s.IdleTimeout == 0 && !c.holds("server.idle_timeout") {
		s.IdleTimeout = 90 * time.Second
	}
	if s.ReadTimeout == 0 && !c.holds("server.read_timeout") {
		s.ReadTimeout = 60 * time.Second
	}
	if c.Limiter.Store == "" && c.Limiter.Redis.Given() {
		// A redis block without a store makes it redis: limits pointed at a shared
		// Redis must never be kept per process instead.
		c.Limiter.Store = "redis"
	}
	if c.Auth.Mode == "" {
		// Keys listed turn authentication on: a config that names its clients' keys
		// must not serve without them because the mode was left out. So does the
		// keys list written with nothing in it (every key commented out to revoke
		// it, which YAML reads as null): that config is refused for having no key
		// rather than served to anyone.
		c.Auth.Mode = "none"
		if _, written := c.lines["auth.keys"]; written || len(c.Auth.Keys) > 0 {
			c.Auth.Mode = "keys"
		}
	}
	if c.Logging.Level == "" {
		c.Logging.Level = "info"
	}
	if c.Logging.Format == "" {
		c.Logging.Format = "json"
	}
	for i := range c.Endpoints {
		for j := range c.Endpoints[i].Routes {
			r := &c.Endpoints[i].Routes[j]
			// An MLflow endpoint's one route is left without: its backend's name is
			// the endpoint's, which MLflow lets be of any length and letters, and a
			// variant must be a label. The router names it after the backend still.
			if r.Variant == "" && c.Endpoints[i].mlflow == nil {
				r.Variant = r.Backend
			}
		}
		if c.Endpoints[i].DefaultMaxTokens == 0 {
			c.Endpoints[i].DefaultMaxTokens = 256
		}
		c.cacheDefaults(i)
		if len(c.Endpoints[i].Routes) == 1 && c.Endpoints[i].Routes[0].Weight == 0 {
			c.Endpoints[i].Routes[0].Weight = 100
		}
	}
}

// holds reports whether the file gives key a value: written, and not null (left
// empty, an unset ${VAR}, a value refused and set aside).
func (c *Config) holds(key string) bool {
	if _, ok := c.lines[key]; !ok {
		return false
	}
	for _, scalars := range c.scalars {
		for _, sa := range scalars {
			if sa.path == key && sa.node.ShortTag() != "!!null" {
				return true
			}
		}
	}
	return false
}

// keyProblem is a validation problem of one key path.
type keyProblem interface {
	Key() string
	Problem() string
}

// keyAt is a keyProblem placed at the line of another key path than the one it
// names (At): a header entry whose name the message leaves out.
type keyAt interface {
	At() string
}

// defaultMaxBuffered is server.max_buffered_bytes left out: 1GiB, or half the Go
// runtime's memory limit (GOMEMLIMIT, or what tollgate serve set from the cgroup's)
// when that is less, but at least maxBody, so that a body of the largest size is taken.
func defaultMaxBuffered(maxBody Size, memLimit int64) Size {
	return max(min(1<<30, Size(memLimit/2)), maxBody)
}

// problems validates every section; each problem names its line.
func (c *Config) problems() []string {
	var out []string
	add := func(key, problem string) {
		out = append(out, c.problemAt(key, problem))
	}
	addErr := func(prefix string, err error) {
		out = append(out, c.errProblems(prefix, err)...)
	}
	c.listenProblems(add)
	switch {
	case c.Server.MaxBodyBytes < 0:
		add("server.max_body_bytes", "must not be negative")
	case c.Server.MaxBodyBytes == 0:
		// Written so (applyDefaults): every request with a body would get 413.
		add("server.max_body_bytes", "must be more than 0 (leave it out for 8MiB)")
	}
	switch {
	case c.Server.MaxBufferedBytes < 0:
		add("server.max_buffered_bytes", "must not be negative")
	case c.Server.MaxBufferedBytes == 0:
		add("server.max_buffered_bytes", "must be more than 0 (leave it out for 1GiB or half the memory limit)")
	case c.Server.MaxBufferedBytes < c.Server.MaxBodyBytes:
		// One body of the largest size allowed would never be taken.
		add("server.max_buffered_bytes", "must be at least server.max_body_bytes")
	}
	if c.Server.ShutdownGrace < 0 {
		add("server.shutdown_grace", "must not be negative")
	}
	// A negative timeout would mean none at all: connections held open by slow or idle
	// clients (slowloris). So would a read_timeout of 0 in fasthttp, and an idle_timeout
	// of 0 would be the read_timeout: a 0 here was written so (applyDefaults), and the
	// operator is told what to write rather than given the default without a word.
	for _, d := range []struct {
		key, def string
		v        time.Duration
	}{
		{"server.read_timeout", "60s", c.Server.ReadTimeout},
		{"server.idle_timeout", "90s", c.Server.IdleTimeout},
	} {
		switch {
		case d.v < 0:
			add(d.key, "must not be negative")
		case d.v == 0:
			add(d.key, "must be more than 0 (leave it out for "+d.def+")")
		}
	}
	// No header value can end in whitespace or hold a line break: the admin API would
	// refuse every call.
	switch t := c.Server.AdminToken; {
	case strings.TrimSpace(t) != t:
		add("server.admin_token", wsProblem)
	case strings.ContainsAny(t, "\r\n\x00"):
		add("server.admin_token", lineBreakProblem)
	}
	if _, err := c.Server.TLS.load(); err != nil {
		add("server.tls", err.Error())
	}
	if _, bad := parseTrustedProxies(c.Server.TrustedProxies); bad != "" {
		if instead := mappedInstead(bad); instead != "" {
			add("server.trusted_proxies", strconv.Quote(bad)+" is an IPv4-mapped address whose prefix counts IPv6 bits: it covers every IPv4 client, all of whose X-Forwarded-For would be trusted; write "+instead)
		} else {
			add("server.trusted_proxies", strconv.Quote(bad)+" is not an address or a CIDR range")
		}
	}
	if f := c.Server.ForwardedHeader; f != "" && !strings.EqualFold(f, forwardedXFF) && !strings.EqualFold(f, forwardedRFC7239) {
		add("server.forwarded_header", "must be x-forwarded-for or forwarded")
	}
	switch c.Auth.Mode {
	case "none", "keys":
	default:
		add("auth.mode", "must be none or keys")
	}
	for _, sk := range [...]struct {
		key, v string
	}{{"auth.response_secret", c.Auth.ResponseSecret}, {"auth.previous_response_secret", c.Auth.PreviousResponseSecret}} {
		if _, written := c.lines[sk.key]; written && sk.v == "" && !slices.Contains(c.refused, sk.key) {
			// Written to sign response IDs, but empty (a variable set to nothing):
			// taken as no secret, it would leave every key's stored responses open
			// to the others (or, as the previous one, end them).
			add(sk.key, "is empty: give at least "+strconv.Itoa(minResponseSecret)+" random bytes, or leave the key out")
		}
		if n := len(sk.v); n > 0 && n < minResponseSecret {
			add(sk.key, "is "+strconv.Itoa(n)+" bytes: give at least "+strconv.Itoa(minResponseSecret)+" random ones (openssl rand -hex 32 makes one)")
		}
	}
	if c.Auth.PreviousResponseSecret != "" {
		if c.Auth.ResponseSecret == "" {
			add("auth.previous_response_secret", "is set without auth.response_secret: a rotation names the new secret there (signatures are not checked without one)")
		} else if subtle.ConstantTimeCompare([]byte(c.Auth.PreviousResponseSecret), []byte(c.Auth.ResponseSecret)) == 1 {
			add("auth.previous_response_secret", "is auth.response_secret itself: put the new secret in auth.response_secret")
		}
	}
	endpointNames := map[string]bool{}
	for _, e := range c.Endpoints {
		endpointNames[e.Name] = true
	}
	// aliasOf maps each endpoint alias to its endpoint's name: one name, given as
	// "model", must mean one endpoint.
	aliasOf := map[string]string{}
	for i, e := range c.Endpoints {
		for j, a := range e.Aliases {
			k := "endpoints[" + strconv.Itoa(i) + "].aliases[" + strconv.Itoa(j) + "]"
			switch of, dup := aliasOf[a]; {
			case a == "":
				add(k, "is empty")
			case !validEndpointName(a):
				add(k, "must not hold spaces, control characters or braces (clients send it as \"model\")")
			case a == "*":
				add(k, `"*" is reserved: a key's endpoints: ["*"] means every endpoint`)
			case a == metrics.UnknownEndpoint:
				add(k, `"unknown" is reserved: endpoint="unknown" in the metrics counts the requests refused before an endpoint was known`)
			case dotSegment(a):
				add(k, dotSegmentProblem)
			case endpointNames[a]:
				add(k, strconv.Quote(a)+" is the name of an endpoint")
			case dup && of == e.Name:
				add(k, "duplicate alias "+strconv.Quote(a))
			case dup:
				add(k, strconv.Quote(a)+" is already an alias of endpoint "+strconv.Quote(of))
			default:
				aliasOf[a] = e.Name
			}
		}
	}
	keyNames := map[string]bool{}
	// keyHashes finds two entries with the same key, whether each gives the key or its
	// SHA-256: requests are matched by hash, so only one of them could ever be used.
	keyHashes := map[[sha256.Size]byte]int{}
	sameKey := func(p, field string, h [sha256.Size]byte, i int) {
		if j, ok := keyHashes[h]; ok {
			add(p+"."+field, "same key as auth.keys["+strconv.Itoa(j)+"]")
			return
		}
		keyHashes[h] = i
	}
	for i, k := range c.Auth.Keys {
		p := "auth.keys[" + strconv.Itoa(i) + "]"
		if k.Name == "" {
			add(p+".name", "is required")
		} else if keyNames[k.Name] {
			add(p+".name", "duplicate key name "+strconv.Quote(k.Name))
		}
		keyNames[k.Name] = true
		switch {
		case k.Key == "" && k.SHA256 == "":
			add(p+".key", "give key or sha256")
		case k.Key != "" && k.SHA256 != "":
			add(p+".sha256", "give key or sha256, not both")
		case strings.TrimSpace(k.Key) != k.Key:
			// Clients' keys are trimmed (a header value cannot end in whitespace), so
			// this one could never match.
			add(p+".key", wsProblem)
		case strings.ContainsAny(k.Key, "\r\n\x00"):
			// Nor can a header value hold a line break.
			add(p+".key", lineBreakProblem)
		case strings.TrimSpace(k.SHA256) != k.SHA256:
			add(p+".sha256", wsProblem)
		case k.SHA256 != "":
			b, err := hex.DecodeString(k.SHA256)
			if err != nil || len(b) != sha256.Size {
				add(p+".sha256", "must be 64 hex digits")
				break
			}
			sameKey(p, "sha256", [sha256.Size]byte(b), i)
		default:
			sameKey(p, "key", sha256.Sum256([]byte(k.Key)), i)
		}
		addErr(p, limiter.ValidateLimits(k.Limits))
		if _, written := c.lines[p+".expires_at"]; written && k.ExpiresAt == "" {
			// Written empty (a variable set to nothing, null): read as no expiry,
			// a key meant to stop would work for good.
			add(p+".expires_at", "is empty: give the instant the key stops working (RFC 3339, e.g. 2026-12-31T23:59:59Z), or leave the key out")
		} else if _, err := parseExpiry(k.ExpiresAt); err != nil {
			add(p+".expires_at", err.Error())
		}
		if _, written := c.lines[p+".endpoints"]; (written || k.Endpoints != nil) && len(k.Endpoints) == 0 {
			// Leaving endpoints out allows every one; an empty list reads as "none",
			// which would make the key useless, so it is not taken either way. The
			// key written with nothing under it (its last item commented out to
			// revoke it) is YAML null, the same slice as leaving it out: refused too,
			// or a revoked key would be allowed everything.
			add(p+".endpoints", `lists no endpoint: leave it out (or write ["*"]) for all of them`)
		}
		for j, e := range k.Endpoints {
			if of, ok := aliasOf[e]; ok {
				add(p+".endpoints["+strconv.Itoa(j)+"]", strconv.Quote(e)+" is an alias of endpoint "+strconv.Quote(of)+": name the endpoint (its aliases come with it)")
			} else if !endpointNames[e] && e != "*" {
				add(p+".endpoints["+strconv.Itoa(j)+"]", "unknown endpoint "+strconv.Quote(e))
			}
		}
	}
	for i, k := range c.Auth.Keys {
		// A name is logged, shown by the admin API and a metric label; a name that is
		// a client key (a variable pasted for both) would publish it.
		if j, ok := keyHashes[sha256.Sum256([]byte(k.Name))]; ok && k.Name != "" {
			add("auth.keys["+strconv.Itoa(i)+"].name", "is the key of auth.keys["+strconv.Itoa(j)+"]: a name is logged and shown, a key never")
		}
	}
	c.combinedLimitProblems(add)
	if c.Auth.Mode == "keys" && len(c.Auth.Keys) == 0 {
		add("auth.keys", "mode keys needs at least one key")
	}
	if c.Auth.Mode == "none" && len(c.Auth.Keys) > 0 {
		add("auth.mode", "is none, so the keys listed would never be asked for: set mode: keys, or remove the keys")
	}
	backendNames := c.backendNames()
	for _, name := range backendNames {
		b := c.Backends[name]
		if name == metrics.None && c.mlflowKeys == nil {
			// An MLflow backend is named after its endpoint: said there.
			add("backends."+name, reservedNone)
		}
		addErr("backends."+name, b.Validate())
	}
	seen := map[string]bool{}
	for i, e := range c.Endpoints {
		p := "endpoints[" + strconv.Itoa(i) + "]"
		if e.Name == "" {
			add(p+".name", "is required")
		} else if !validEndpointName(e.Name) {
			add(p+".name", "must not hold spaces, control characters or braces (clients send it as \"model\"; it also keys shared state in Redis)")
		} else if seen[e.Name] {
			add(p+".name", "duplicate endpoint "+strconv.Quote(e.Name))
		} else if e.Name == metrics.UnknownEndpoint {
			add(p+".name", `"unknown" is reserved: endpoint="unknown" in the metrics counts the requests refused before an endpoint was known`)
		} else if dotSegment(e.Name) {
			add(p+".name", dotSegmentProblem)
		} else if e.Name == metrics.None && e.mlflow != nil {
			// Its backend is named after it.
			add(p+".name", reservedNone)
		}
		seen[e.Name] = true
		for j, r := range e.Routes {
			if r.Variant != metrics.None {
				continue
			}
			// A route without a variant is named after its backend, whose name is
			// reported above.
			k := p + ".routes[" + strconv.Itoa(j) + "].variant"
			if _, written := c.lines[k]; written || r.Backend != metrics.None {
				add(k, `"none" is reserved: variant="none" in the metrics counts the requests no route served (the gateway's own answers, refusals, fallbacks)`)
			}
		}
		if _, ok := kindOf(e.Type); !ok {
			add(p+".type", "must be chat, completions, embeddings, rerank or transcriptions")
		}
		if e.Timeout < 0 {
			add(p+".timeout", "must not be negative")
		}
		switch {
		case e.DefaultMaxTokens < 0:
			add(p+".default_max_tokens", "must not be negative")
		case e.DefaultMaxTokens > 1<<40:
			// The bound max_tokens is counted up to (scan.go): the estimate multiplies
			// it by the completions asked for, and a larger default could overflow.
			add(p+".default_max_tokens", "must be at most 1099511627776 (2^40), as max_tokens is counted")
		}
		c.cacheProblems(p, e.Cache, add)
		if kind, ok := kindOf(e.Type); ok && kind == providers.Transcription && e.Cache != nil {
			add(p+".cache", "does not apply to a transcriptions endpoint: its answers are not cached")
		}
		if kind, ok := kindOf(e.Type); ok && kind != providers.Chat {
			// The Messages API has chat only, and Azure's deployment URLs no rerank:
			// every such request would be refused.
			lacks := func(key, backend string) {
				if b, ok := c.Backends[backend]; ok && (b.Provider == "anthropic" || b.Provider == "azure" && kind == providers.Rerank) {
					add(key, "backend "+strconv.Quote(backend)+" is provider "+b.Provider+", which has no "+kind.String())
				}
			}
			for j, r := range e.Routes {
				lacks(p+".routes["+strconv.Itoa(j)+"].backend", r.Backend)
			}
			for j, f := range e.Fallbacks {
				lacks(p+".fallbacks["+strconv.Itoa(j)+"]", f)
			}
			for j, f := range e.ContextFallbacks {
				lacks(p+".context_fallbacks["+strconv.Itoa(j)+"]", f)
			}
		}
		addErr(p, limiter.ValidateLimits(e.Limits))
		// An MLflow traffic route whose destinations were refused has no routes to
		// check (fromMLflowRoute). An MLflow endpoint without a name has its one route
		// to a backend named after it, whose empty name is the name's problem, said
		// above: the route's would name the model block as required.
		if e.mlflow == nil || !e.mlflow.refused && (e.Name != "" || e.mlflow.trafficRoute) {
			if _, err := router.NewEndpoint(e.Name, e.Config, backendNames); err != nil {
				addErr(p, err)
			}
		}
		if e.Sticky != nil && e.Sticky.From == router.StickyAPIKey && c.Auth.Mode == "none" {
			// Without authentication no request has a key name to hash: every caller
			// would be drawn by weight on every call, flipping between variants.
			add(p+".sticky.from", "is api_key, but auth.mode is none, so no request has a key to stick by: set auth.mode: keys, or stick from header or user")
		}
	}
	c.usdLimitProblems(add)
	addErr("tracing", c.Tracing.Validate())
	addErr("limiter", c.Limiter.Validate())
	switch c.Logging.Level {
	case "debug", "info", "warn", "error":
	default:
		add("logging.level", "must be debug, info, warn or error")
	}
	switch c.Logging.Format {
	case "json", "text":
	default:
		add("logging.format", "must be json or text")
	}
	return out
}

// problemAt is one problem of a key path, as FILE:LINE: key: what.
func (c *Config) problemAt(key, problem string) string {
	return c.problemAtLine(key, key, problem)
}

// problemAtLine is one problem of a key path at the line of key path at (key or one
// below it), as FILE:LINE: key: what.
func (c *Config) problemAtLine(key, at, problem string) string {
	if c.mlflowKeys != nil {
		key, at = c.mlflowKeys.key(key), c.mlflowKeys.key(at)
	}
	return c.path + ":" + strconv.Itoa(c.lineOf(at)) + ": " + key + ": " + problem
}

// errProblems lists the problems an error joins, each under prefix and, for a
// keyProblem, its own key below it.
func (c *Config) errProblems(prefix string, err error) []string {
	var out []string
	for _, e := range flatten(err) {
		var kp keyProblem
		if errors.As(e, &kp) {
			key := join(prefix, kp.Key())
			if ka, ok := kp.(keyAt); ok {
				// Its message names key alone, so dropKeyProblems could not tell it is
				// about a value already reported; it is left out here.
				at := join(prefix, ka.At())
				if !slices.Contains(c.refused, at) && !slices.Contains(c.unread, at) {
					out = append(out, c.problemAtLine(key, at, kp.Problem()))
				}
				continue
			}
			out = append(out, c.problemAt(key, kp.Problem()))
		} else {
			out = append(out, c.problemAt(prefix, e.Error()))
		}
	}
	return out
}

// listenProblems checks server.listen and server.admin_listen as the listeners will
// take them, so that validate refuses what serve could not listen on. The port must
// be a number: a service name (:http) depends on the services database of the machine
// that serves.
func (c *Config) listenProblems(add func(key, problem string)) {
	type addr struct {
		key, host string
		port      int
	}
	var ok []addr
	for _, a := range []struct{ key, v string }{
		{"server.listen", c.Server.Listen},
		{"server.admin_listen", c.Server.AdminListen},
	} {
		host, port, err := net.SplitHostPort(a.v)
		if err != nil {
			var ae *net.AddrError
			if errors.As(err, &ae) {
				err = errors.New(ae.Err)
			}
			add(a.key, strconv.Quote(a.v)+" is not host:port ("+err.Error()+"; e.g. \":8080\" or \"127.0.0.1:9090\")")
			continue
		}
		if port == "" {
			add(a.key, strconv.Quote(a.v)+" has no port after the colon (0 picks a free port)")
			continue
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			add(a.key, "port "+strconv.Quote(port)+" must be a number from 0 to 65535 (0 picks a free port)")
			continue
		}
		ok = append(ok, addr{a.key, host, int(n)})
	}
	if len(ok) == 2 && ok[0].port == ok[1].port && ok[0].port != 0 && sameHost(ok[0].host, ok[1].host) {
		add("server.admin_listen", "is on the same address and port as server.listen; give the admin listener its own port")
	}
}

// sameHost reports whether two listen hosts may take the same address: equal, or
// either one all addresses (empty, 0.0.0.0 or ::). Names are not resolved (validate
// may run on another machine), but for localhost, on which Go listens at 127.0.0.1
// (IPv4 first): "localhost:8080" beside "127.0.0.1:8080" passed here and then failed
// to listen at start.
func sameHost(a, b string) bool {
	all := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	local := func(h string) string {
		if strings.EqualFold(h, "localhost") {
			return "127.0.0.1"
		}
		return h
	}
	return local(a) == local(b) || all(a) || all(b)
}

// combinedLimitProblems finds the keys whose limits, with those of an endpoint the
// key may call, are more than apply to one request: both sets are checked on each of
// the key's requests there.
func (c *Config) combinedLimitProblems(add func(key, problem string)) {
	for i, k := range c.Auth.Keys {
		if len(k.Limits) == 0 || len(k.Limits) > limiter.MaxLimits {
			continue
		}
		for _, e := range c.Endpoints {
			n := len(k.Limits) + len(e.Limits)
			if n <= limiter.MaxLimits || len(e.Limits) > limiter.MaxLimits || !k.mayCall(e.Name) {
				continue
			}
			add("auth.keys["+strconv.Itoa(i)+"].limits", strconv.Itoa(len(k.Limits))+" limits here and "+
				strconv.Itoa(len(e.Limits))+" of endpoint "+strconv.Quote(e.Name)+" make "+strconv.Itoa(n)+
				" for one request; at most "+strconv.Itoa(limiter.MaxLimits)+" apply")
		}
	}
}

// usdLimitProblems finds the spend budgets (usd limits) that would count nothing: a
// backend without a price costs 0 (a self-hosted vLLM is free to call), so a budget on
// an endpoint none of whose backends (routes, fallbacks and context fallbacks) has a
// price, or on a key that reaches no backend with one, would never run out.
func (c *Config) usdLimitProblems(add func(key, problem string)) {
	priced := c.endpointPriced
	const why = "would count nothing (a backend without a price costs 0): give a backend pricing, or limit tokens instead"
	var pricedEndpoints []string
	for i := range c.Endpoints {
		e := &c.Endpoints[i]
		ok := priced(e)
		if ok {
			pricedEndpoints = append(pricedEndpoints, e.Name)
		}
		for j, l := range e.Limits {
			if l.USD > 0 && !ok {
				add("endpoints["+strconv.Itoa(i)+"].limits["+strconv.Itoa(j)+"].usd",
					"no backend of endpoint "+strconv.Quote(e.Name)+" (its routes and fallbacks) has a price, so this budget "+why)
			}
		}
	}
	for i := range c.Auth.Keys {
		k := &c.Auth.Keys[i]
		for j, l := range k.Limits {
			if l.USD > 0 && !slices.ContainsFunc(pricedEndpoints, k.mayCall) {
				add("auth.keys["+strconv.Itoa(i)+"].limits["+strconv.Itoa(j)+"].usd",
					"no backend the key can reach has a price, so this budget "+why)
			}
		}
	}
}

// endpointPriced reports whether a backend of e (its routes, fallbacks and context
// fallbacks) has a price.
func (c *Config) endpointPriced(e *EndpointConfig) bool {
	for _, r := range e.Routes {
		if b, ok := c.Backends[r.Backend]; ok && !b.Pricing.Free() {
			return true
		}
	}
	for _, f := range slices.Concat(e.Fallbacks, e.ContextFallbacks) {
		if b, ok := c.Backends[f]; ok && !b.Pricing.Free() {
			return true
		}
	}
	return false
}

// keyPriced reports whether a key allowed on the endpoints allowed (by index) can
// reach a backend with a price.
func (c *Config) keyPriced(allowed []bool) bool {
	for i := range c.Endpoints {
		if allowed[i] && c.endpointPriced(&c.Endpoints[i]) {
			return true
		}
	}
	return false
}

// mayCall reports whether the key may call the endpoint named name.
func (k *KeyConfig) mayCall(name string) bool {
	return len(k.Endpoints) == 0 || slices.Contains(k.Endpoints, "*") || slices.Contains(k.Endpoints, name)
}

// dotSegment reports whether name is "." or "..", which a path cannot name: HTTP
// clients and proxies resolve them away (RFC 3986 5.2.4) before
// /admin/endpoints/{name} or /endpoints/{name}/invocations reach the gateway.
func dotSegment(name string) bool { return name == "." || name == ".." }

const dotSegmentProblem = `"." and ".." cannot be named in a URL path (/admin/endpoints/{name}, /endpoints/{name}/invocations): clients resolve them away`

// reservedNone is the problem of a backend named none (or an MLflow endpoint, whose
// backend is named after it): backend="none" in the metrics counts the requests no
// backend served.
const reservedNone = `"none" is reserved: backend="none" in the metrics counts the requests no backend served (the gateway's own answers, refusals)`

// wsProblem is the problem of a key (a client's, its sha256, the admin token) with
// surrounding whitespace, as of a backend's secrets. It does not quote the key.
const wsProblem = providers.WhitespaceProblem

// lineBreakProblem is the problem of such a key holding a line break or NUL.
const lineBreakProblem = providers.LineBreakProblem

// validEndpointName reports whether name can be a model name clients send, a path
// segment of the admin API and a Redis hash tag: no spaces, control characters or
// braces. Slashes, colons and @ (meta-llama/Llama-3.1-8B-Instruct, ft:gpt-4o-mini:org:x,
// claude-3-5-sonnet@20240620) are fine.
func validEndpointName(name string) bool {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c == 0x7f || c == '{' || c == '}' {
			return false
		}
	}
	return true
}

// backendNames lists the backends in a fixed order: a plan's backend indexes refer to it.
func (c *Config) backendNames() []string {
	names := make([]string, 0, len(c.Backends))
	for name := range c.Backends {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// lineOf finds the line of a key path, or of its nearest parent present in the file.
func (c *Config) lineOf(key string) int {
	for key != "" {
		if l, ok := c.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 1
}

func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

func kindOf(t string) (providers.Kind, bool) {
	switch t {
	case "chat":
		return providers.Chat, true
	case "completions":
		return providers.Completions, true
	case "embeddings":
		return providers.Embeddings, true
	case "rerank":
		return providers.Rerank, true
	case "transcriptions":
		return providers.Transcription, true
	}
	return 0, false
}
