package gateway

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/valyala/fasthttp"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/tollgate/tollgate/limiter"
	"github.com/tollgate/tollgate/providers"
	"github.com/tollgate/tollgate/router"
	"github.com/tollgate/tollgate/tracing"
)

// MLflow AI Gateway compatibility: its config file (a top-level `endpoints:` list whose
// entries have endpoint_type and model) loads as it is, and its routes answer.

// mlflowFile is MLflow's format, plus Tollgate's own sections beside the endpoints
// (listeners, auth, limiter, tracing, logging), which MLflow files do not have.
type mlflowFile struct {
	Endpoints []mlflowEndpoint `yaml:"endpoints"`
	// Routes is the older name of endpoints in MLflow's gateway, in a file without
	// endpoints.
	Routes []mlflowEndpoint `yaml:"routes"`
	Own    mlflowOwn        `yaml:",inline"`
	// traffic are the traffic routes of a file in MLflow's current format
	// (mlflowTrafficFile).
	traffic []mlflowRoute
}

// mlflowOwn are Tollgate's own sections beside an MLflow file's endpoints.
type mlflowOwn struct {
	Server  ServerConfig   `yaml:"server"`
	Auth    AuthConfig     `yaml:"auth"`
	Limiter limiter.Config `yaml:"limiter"`
	Tracing tracing.Config `yaml:"tracing"`
	Logging LoggingConfig  `yaml:"logging"`
}

// mlflowTrafficFile is MLflow's current format, read when the file has endpoints: its
// routes: beside them are traffic routes, each splitting a task's calls between
// endpoints by percentage.
type mlflowTrafficFile struct {
	Endpoints []mlflowEndpoint `yaml:"endpoints"`
	Routes    []mlflowRoute    `yaml:"routes"`
	Own       mlflowOwn        `yaml:",inline"`
}

// mlflowRoute is one of MLflow's traffic routes.
type mlflowRoute struct {
	Name         string              `yaml:"name"`
	TaskType     string              `yaml:"task_type"`
	Destinations []mlflowDestination `yaml:"destinations"`
	// RoutingStrategy is TRAFFIC_SPLIT, the one MLflow has (and its default).
	RoutingStrategy string `yaml:"routing_strategy"`
}

type mlflowDestination struct {
	Name string `yaml:"name"`
	// TrafficPercentage is required, as MLflow's RouteDestinationConfig has it: nil
	// when left out, rather than a share of 0 that would load.
	TrafficPercentage *mlflowInt `yaml:"traffic_percentage"`
}

// mlflowInt is an int field of MLflow's pydantic models as written (a destination's
// traffic_percentage, a limit's calls), read by value as pydantic reads it.
type mlflowInt struct{ n yaml.Node }

// UnmarshalYAML keeps the value for value to read: any refusal is then reported
// once, at its key, with the entry's other checks.
func (p *mlflowInt) UnmarshalYAML(n *yaml.Node) error {
	p.n = *n
	return nil
}

// value reads the field as pydantic 2 reads an int field in lax mode, as MLflow's
// RouteDestinationConfig.traffic_percentage and Limit.calls are read: a whole number
// however written (50, 50.0, "50", " 50 ", "+50", "5_0", "50.00"), and true and false
// as 1 and 0. A fraction (50.5, "50.5"), a word, a string pydantic does not read as a
// number ("50.", "0x32", "1e2") and a value of another kind are refused, the problem
// saying what to write. YAML's own forms of a number (0x32, 5_0) are read as the
// rest of the file is. A whole number past int's range is capped there, for the
// caller's range check to refuse.
func (p *mlflowInt) value() (int, string) {
	n := &p.n
	const want = "must be a whole number, not "
	if n.Kind != yaml.ScalarNode {
		return 0, want + cmp.Or(yamlTags[n.ShortTag()], "a value tagged "+n.ShortTag())
	}
	switch tag := n.ShortTag(); tag {
	case "!!int":
		var v int
		if n.Decode(&v) != nil {
			if f := 0.0; n.Decode(&f) == nil {
				return capInt(f), "" // past int's range
			}
			return 0, want + n.Value // tagged !!int, and not one
		}
		return v, ""
	case "!!float":
		var f float64
		if n.Decode(&f) != nil || math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) {
			return 0, want + n.Value
		}
		return capInt(f), ""
	case "!!bool":
		var b bool
		if n.Decode(&b) != nil {
			return 0, want + strconv.Quote(n.Value)
		}
		if b {
			return 1, ""
		}
		return 0, ""
	case "!!str":
		v, ok := jsonscan.CountText([]byte(n.Value), math.MaxInt)
		if !ok {
			return 0, want + strconv.Quote(n.Value)
		}
		return int(v), ""
	default:
		return 0, want + cmp.Or(yamlTags[tag], "a value tagged "+tag)
	}
}

// capInt is f, a whole number, capped at int's range.
func capInt(f float64) int {
	switch {
	case f >= math.MaxInt:
		return math.MaxInt
	case f <= math.MinInt:
		return math.MinInt
	}
	return int(f)
}

// mlflowLimit is an endpoint's limit block as written: MLflow's Limit model, whose
// calls is an int field read as pydantic reads one ("10" is 10).
type mlflowLimit struct {
	Calls         *mlflowInt `yaml:"calls"`
	RenewalPeriod string     `yaml:"renewal_period"`
	Key           string     `yaml:"key"`
}

type mlflowEndpoint struct {
	Name         string       `yaml:"name"`
	EndpointType string       `yaml:"endpoint_type"`
	RouteType    string       `yaml:"route_type"`
	Model        mlflowModel  `yaml:"model"`
	Limit        *mlflowLimit `yaml:"limit"`
}

type mlflowModel struct {
	Provider string            `yaml:"provider"`
	Name     string            `yaml:"name"`
	Config   map[string]string `yaml:"config"`
}

// mlflowInfo is what the MLflow routes report about an endpoint.
type mlflowInfo struct {
	EndpointType string
	Provider     string
	Model        string
	Limit        *limiter.MLflowLimit
	// trafficRoute is set for a traffic route's endpoint, which MLflow serves but
	// does not list.
	trafficRoute bool
	// refused: a problem of the traffic route's destinations was reported; its
	// endpoint has no routes, whose checks would report it again.
	refused bool
	// hostedNameless is the MLflow key of the model.name left out of an endpoint
	// whose upstream is its provider's own API, which refuses calls without a
	// model (warnMLflowNameless); "" for any other.
	hostedNameless string
}

// isMLflow tells an MLflow gateway config from ours by its endpoint entries: one with
// endpoint_type or route_type, or with a model block naming a provider, is MLflow's
// (ours have type and routes). Every entry is looked at, so that a file whose first
// entry lacks its endpoint_type is still read as MLflow's and the missing key
// reported, rather than each MLflow key as unknown to ours.
func isMLflow(root *yaml.Node) bool {
	if root.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i].Value, root.Content[i+1]
		if k != "endpoints" && k != "routes" {
			if k == "backends" {
				return false
			}
			continue
		}
		if v.Kind != yaml.SequenceNode {
			continue
		}
		for _, e := range v.Content {
			if mlflowEntry(e) {
				return true
			}
		}
	}
	return false
}

// mlflowEntry reports whether an endpoints entry has MLflow's keys.
func mlflowEntry(e *yaml.Node) bool {
	if e = deref(e); e.Kind != yaml.MappingNode {
		return false
	}
	for j := 0; j+1 < len(e.Content); j += 2 {
		switch k, v := e.Content[j].Value, e.Content[j+1]; k {
		case "endpoint_type", "route_type":
			return true
		case "model":
			if v = deref(v); v.Kind != yaml.MappingNode {
				continue
			}
			for m := 0; m+1 < len(v.Content); m += 2 {
				if v.Content[m].Value == "provider" {
					return true
				}
			}
		}
	}
	return false
}

var mlflowEnvRef = regexp.MustCompile(`^\$([A-Za-z_][A-Za-z0-9_]*)$`)

// expandMLflowRef reads a `$VAR` value as MLflow does: a whole value naming a
// variable, which must be set and not empty. key is n's key path, for the messages.
// expandEnv calls it for each value that holds no ${VAR}, so that no value is read
// twice.
func expandMLflowRef(n *yaml.Node, key string, env func(string) (string, bool), problem func(n *yaml.Node, key, problem string)) {
	m := mlflowEnvRef.FindStringSubmatch(n.Value)
	if m == nil {
		return
	}
	v, ok := env(m[1])
	switch {
	case !ok:
		problem(n, key, "environment variable "+m[1]+" is not set")
	case v == "":
		problem(n, key, "environment variable "+m[1]+" is empty")
	}
	n.Value = v
	n.Tag, n.Style = "", 0
}

// mlflowKey reads an API key as MLflow's gateway does: a value naming a regular file
// (a mounted Docker or Kubernetes secret) is read from that file, a relative path from
// the working directory; any other value is the key itself. The trailing newline a
// secret file usually has is not part of the key. A key read from a file comes with
// the file, for the watch to follow, and so does a value that looks like a path
// (keyPathLike) but names no regular file: it is the key, as in MLflow, until the
// file lands (a Vault agent or a CSI driver rendering it after the start, a Secret
// volume synced after the ConfigMap's), which the watch then sees as a change; its
// sum is zero, no file's. Errors never quote the content.
func mlflowKey(v string) (string, *keyFile, error) {
	if v == "" {
		return "", nil, nil
	}
	fi, err := os.Stat(v)
	if err != nil || !fi.Mode().IsRegular() {
		if keyPathLike(v) {
			return v, &keyFile{path: v}, nil
		}
		return v, nil, nil
	}
	b, err := os.ReadFile(v)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", nil, errors.New("cannot read the key file: " + err.Error())
	}
	kf := &keyFile{path: v, sum: sha256.Sum256(b)}
	key := strings.TrimRight(string(b), "\r\n")
	if key == "" {
		return "", kf, errors.New("the key file is empty")
	}
	return key, kf, nil
}

// keyPathLike reports whether an API key value reads as a file's path, whether or not
// the file is there: absolute with a directory other than the root, or relative from
// "./" or "../", and made of [A-Za-z0-9._/-] alone. A relative name without "./" might
// be a key, and so might a value from "/" alone: `openssl rand -base64 32` makes one
// in 64 keys start with "/", and base64 (with '+' and '=') has no '.' or '-'.
func keyPathLike(v string) bool {
	if !strings.HasPrefix(v, "./") && !strings.HasPrefix(v, "../") &&
		(!filepath.IsAbs(v) || filepath.Dir(v) == string(filepath.Separator)) {
		return false
	}
	for i := 0; i < len(v); i++ {
		switch b := v[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '.', b == '_', b == '/', b == '-':
		default:
			return false
		}
	}
	return true
}

// absent reports whether f is a path-like key value that named no regular file
// when its config was read (mlflowKey).
func (f keyFile) absent() bool { return f.sum == [sha256.Size]byte{} }

// warnAbsentKeyFiles warns of each key file of cfg that was not there when cfg was
// read: its path went upstream as the key. The warning names the config key and its
// line; the path only when its directory is there: a value that merely reads as a
// path (keyPathLike) may still be a key, and a key is never logged.
func (s *Server) warnAbsentKeyFiles(cfg *Config) {
	for _, f := range cfg.keyFiles {
		if !f.absent() {
			continue
		}
		const msg = warnAbsentKeyFile
		if f.dirThere() {
			s.log.Warn(msg, "key", f.field, "line", f.line, "file", f.path)
		} else {
			s.log.Warn(msg+", and its directory, not there either", "key", f.field, "line", f.line)
		}
	}
}

var mlflowTypes = map[string]string{
	"llm/v1/chat": "chat", "llm/v1/completions": "completions", "llm/v1/embeddings": "embeddings",
}

// mlflowProvider is how one of MLflow's providers maps onto ours: its config keys, the
// one holding the API key (required where MLflow requires it) and the one holding the
// upstream's URL.
type mlflowProvider struct {
	provider, keyField, baseField, defaultBase string
	keyRequired                                bool
	// more are its other config keys.
	more []string
	// viaChat: its llm/v1/completions go to the upstream's chat completions API, as
	// MLflow's openai and mistral providers send them; temperatureScale multiplies
	// their temperature on the way (0: as sent).
	viaChat          bool
	temperatureScale float64
	// namelessModel is the model sent for an endpoint without model.name, where the
	// server wants one it does not read; "" sends none (NoModel). MLflow sends a
	// model server's and a TGI server's calls with none (to /invocations,
	// /generate), and every other provider's with "model": null.
	namelessModel string
}

// known is the set of config keys the provider takes: any other is an error, not a
// key silently ignored (a misspelled openai_api_key would leave the backend keyless).
func (mp mlflowProvider) known() map[string]bool {
	k := map[string]bool{mp.baseField: true}
	if mp.keyField != "" {
		k[mp.keyField] = true
	}
	for _, m := range mp.more {
		k[m] = true
	}
	return k
}

// openaiMore are the config keys of MLflow's OpenAIConfig besides key and base, which
// its azure and azuread providers share.
var openaiMore = []string{"openai_api_type", "openai_api_version", "openai_deployment_name", "openai_organization"}

// mlflowProviders maps MLflow's provider names onto ours. The *_api_base keys of
// mistral and togetherai, and the openai-compatible provider, are ours.
var mlflowProviders = map[string]mlflowProvider{
	"openai": {provider: "openai", keyField: "openai_api_key", baseField: "openai_api_base", defaultBase: "https://api.openai.com/v1",
		keyRequired: true, more: openaiMore, viaChat: true},
	"azure":   {provider: "azure", keyField: "openai_api_key", baseField: "openai_api_base", keyRequired: true, more: openaiMore, viaChat: true},
	"azuread": {provider: "azure", keyField: "openai_api_key", baseField: "openai_api_base", keyRequired: true, more: openaiMore, viaChat: true},
	"anthropic": {provider: "anthropic", keyField: "anthropic_api_key", baseField: "anthropic_api_base", defaultBase: "https://api.anthropic.com/v1",
		keyRequired: true, more: []string{"anthropic_version"}},
	// MLflow's temperature runs from 0 to 2, Mistral's from 0 to 1: MLflow halves it.
	"mistral": {provider: "openai", keyField: "mistral_api_key", baseField: "mistral_api_base", defaultBase: "https://api.mistral.ai/v1",
		keyRequired: true, viaChat: true, temperatureScale: 0.5},
	"togetherai": {provider: "openai", keyField: "togetherai_api_key", baseField: "togetherai_api_base", defaultBase: "https://api.together.xyz/v1",
		keyRequired: true},
	// TGI's Messages API reads no model, but its older versions refuse a call
	// without one; its documentation sends "tgi".
	"huggingface-text-generation-inference": {provider: "openai", baseField: "hf_server_url", namelessModel: "tgi"},
	"mlflow-model-serving":                  {provider: "openai", baseField: "model_server_url"},
	"openai-compatible":                     {provider: "openai", keyField: "api_key", baseField: "api_base"},
}

// readMLflow decodes an MLflow gateway config as checkKeys and decodeRest do ours,
// reporting what they find, and reports whether the file could be read.
func readMLflow(root *yaml.Node, cfg *Config, report func(line int, key, problem string)) (*mlflowFile, bool) {
	skipUnsupportedConfigs(root, false)
	if !hasKey(root, "endpoints") {
		checkKeys(root, reflect.TypeOf(mlflowFile{}), "", cfg, report)
		f := &mlflowFile{}
		decoded, ok := decodeRest(root, cfg, f)
		for _, p := range decoded {
			report(0, "", p)
		}
		return f, ok
	}
	checkKeys(root, reflect.TypeOf(mlflowTrafficFile{}), "", cfg, report)
	tf := &mlflowTrafficFile{}
	decoded, ok := decodeRest(root, cfg, tf)
	for _, p := range decoded {
		report(0, "", p)
	}
	return &mlflowFile{Endpoints: tf.Endpoints, Own: tf.Own, traffic: tf.Routes}, ok
}

// skipUnsupportedConfigs sets aside the config of each entry whose provider Tollgate
// does not map (fromMLflow): that provider is the entry's one problem, and its config
// holds what that provider takes (bedrock's aws_config mapping), which read as ours
// would be a second message for the same mistake. The value is replaced in the model
// mapping, not changed where it is written: an anchor there may serve another entry.
// A config merged in (<<) is covered by an own null one.
//
// Called early, before the environment is read, it sets aside only what that reading
// would otherwise look into to no end (the variables of a config not read, their being
// unset a problem beside the provider's): an entry's own config holding no anchor, of a
// provider named without a variable.
func skipUnsupportedConfigs(root *yaml.Node, early bool) {
	list := mergedValue(root, "endpoints")
	if list == nil {
		list = mergedValue(root, "routes")
	}
	if list == nil || list.Kind != yaml.SequenceNode {
		return
	}
	for _, e := range list.Content {
		model := mergedValue(e, "model")
		if model == nil || model.Kind != yaml.MappingNode {
			continue
		}
		if p := mergedValue(model, "provider"); p != nil && p.Kind == yaml.ScalarNode {
			if _, ok := mlflowProviders[p.Value]; ok || early && strings.Contains(p.Value, "$") {
				continue
			}
		}
		c := mergedValue(model, "config")
		if c == nil || early && !ownUnanchored(model, "config") {
			continue
		}
		null := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: c.Line, Column: c.Column}
		own := false
		for i := 0; i+1 < len(model.Content); i += 2 {
			if k := model.Content[i]; !isMergeKey(k) && k.Value == "config" {
				model.Content[i+1], own = null, true
			}
		}
		if !own {
			k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "config", Line: c.Line, Column: c.Column}
			model.Content = append(model.Content, k, null)
		}
	}
}

// ownUnanchored reports whether the mapping n has key itself (not merged in), its
// value written there (no alias) and holding no anchor another key could name.
func ownUnanchored(n *yaml.Node, key string) bool {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !isMergeKey(k) && k.Value == key {
			return !holdsAnchor(n.Content[i+1])
		}
	}
	return false
}

// holdsAnchor reports whether n, or a node written inside it, is an alias or has an
// anchor.
func holdsAnchor(n *yaml.Node) bool {
	if n.Anchor != "" || n.Kind == yaml.AliasNode {
		return true
	}
	return slices.ContainsFunc(n.Content, holdsAnchor)
}

// mergedValue is the value yaml.v3 decodes for key of the mapping n, an alias
// followed: its own, else that of the first mapping merged in (<<) that has it; nil
// where there is none.
func mergedValue(n *yaml.Node, key string) *yaml.Node {
	return mergedValueSeen(n, key, map[*yaml.Node]bool{})
}

// mergedValueSeen is mergedValue, seen holding the mappings looked in: an anchor may
// merge itself, which the parser accepts.
func mergedValueSeen(n *yaml.Node, key string, seen map[*yaml.Node]bool) *yaml.Node {
	if n == nil {
		return nil
	}
	if n = deref(n); n.Kind != yaml.MappingNode || seen[n] {
		return nil
	}
	seen[n] = true
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case isMergeKey(k):
			if v = deref(v); v.Kind == yaml.SequenceNode {
				merges = append(merges, v.Content...)
			} else {
				merges = append(merges, v)
			}
		case k.Value == key:
			return deref(v)
		}
	}
	for _, m := range merges {
		if v := mergedValueSeen(m, key, seen); v != nil {
			return v
		}
	}
	return nil
}

// hasKey reports whether the mapping n has key.
func hasKey(n *yaml.Node, key string) bool {
	if n.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return true
		}
	}
	return false
}

// fromMLflow turns an MLflow gateway config, as readMLflow read it, into ours: one
// backend per endpoint, named after it. Problems name the MLflow file's own keys and
// lines, those found later in the config built from it too (cfg.mlflowKeys).
func fromMLflow(f *mlflowFile, cfg *Config, report func(line int, key, problem string)) {
	o := &f.Own
	cfg.Server, cfg.Auth, cfg.Limiter, cfg.Tracing, cfg.Logging = o.Server, o.Auth, o.Limiter, o.Tracing, o.Logging
	list, listKey := f.Endpoints, "endpoints"
	if len(list) == 0 {
		list, listKey = f.Routes, "routes"
	}
	cfg.Backends = map[string]providers.Config{}
	keys := &mlflowKeys{list: listKey}
	cfg.mlflowKeys = keys
	line := cfg.lineOf
	// unfit marks the entries whose type or provider was refused: a traffic route
	// naming one says nothing more of it (fromMLflowRoute).
	unfit := make([]bool, len(list))
	for i, e := range list {
		p := listKey + "[" + strconv.Itoa(i) + "]"
		typ, typKey := e.EndpointType, p+".endpoint_type"
		if typ == "" && e.RouteType != "" {
			typ, typKey = e.RouteType, p+".route_type"
		} else if typ == "" && listKey == "routes" {
			// The older routes: list names the type route_type (either key is taken).
			typKey = p + ".route_type"
		}
		kind, ok := mlflowTypes[typ]
		switch {
		case typ == "":
			report(line(typKey), typKey, "is required: llm/v1/chat, llm/v1/completions or llm/v1/embeddings")
		case !ok:
			report(line(typKey), typKey, "must be llm/v1/chat, llm/v1/completions or llm/v1/embeddings")
		}
		unfit[i] = !ok
		mp, ok := mlflowProviders[e.Model.Provider]
		if !ok {
			unfit[i] = true
			names := make([]string, 0, len(mlflowProviders))
			for n := range mlflowProviders {
				names = append(names, n)
			}
			sortStrings(names)
			report(line(p+".model.provider"), p+".model.provider", "provider "+strconv.Quote(e.Model.Provider)+" is not supported (supported: "+strings.Join(names, ", ")+")")
			// The endpoint is still there, without a backend, so that a key's
			// endpoints naming it are not reported as unknown.
			cfg.Endpoints = append(cfg.Endpoints, EndpointConfig{Name: e.Name, Type: kind, mlflow: &mlflowInfo{EndpointType: typ, Provider: e.Model.Provider, Model: e.Model.Name}})
			keys.entries = append(keys.entries, mlflowSource{index: i, name: e.Name, typKey: typKey})
			continue
		}
		if mp.provider == "anthropic" && kind != "" && kind != "chat" {
			report(line(typKey), typKey, typ+" is not served by provider anthropic: Tollgate reaches Anthropic through its Messages API, which serves llm/v1/chat only")
			unfit[i] = true
		}
		c := e.Model.Config
		cp := p + ".model.config"
		known := mp.known()
		names := make([]string, 0, len(c))
		for k := range c {
			names = append(names, k)
		}
		sortStrings(names)
		for _, k := range names {
			if !known[k] {
				report(line(cp+"."+k), cp+"."+k, "unknown key for provider "+e.Model.Provider+suggest(k, known))
			}
		}
		if _, ok := c[mp.keyField]; mp.keyRequired && !ok {
			report(line(cp), cp+"."+mp.keyField, "is required for provider "+e.Model.Provider)
		}
		b := providers.Config{Provider: mp.provider, Model: e.Model.Name, BaseURL: c[mp.baseField]}
		if mp.keyField != "" {
			key, kf, err := mlflowKey(c[mp.keyField])
			k := p + ".model.config." + mp.keyField
			if kf != nil {
				kf.field, kf.line = k, line(k)
				cfg.keyFiles = append(cfg.keyFiles, *kf)
			}
			if err != nil {
				report(line(k), k, err.Error())
			}
			b.APIKey = key
		}
		if org := c["openai_organization"]; org != "" {
			b.Headers = map[string]string{"OpenAI-Organization": org}
		}
		apiType := ""
		if known["openai_api_type"] {
			// openai_api_type decides, as in MLflow; without it, the provider's name.
			if apiType = strings.ToLower(c["openai_api_type"]); apiType == "" {
				apiType = e.Model.Provider
			}
		}
		// azureTyped: MLflow's OpenAIConfig needs all three keys for an Azure type; the
		// defaults of provider azure stand in for none of them (without a base, the
		// openai provider's would send the key to OpenAI).
		azureTyped := false
		// typeSaid ends a message about a key of the other API type: the type is the
		// provider's when openai_api_type is left out.
		typeSaid := ", not " + apiType
		if c["openai_api_type"] == "" {
			typeSaid = " (left out, it is " + apiType + " for provider " + e.Model.Provider + ")"
		}
		switch apiType {
		case "":
		case "openai":
			b.Provider = "openai"
			// As MLflow's OpenAIConfig: a deployment is Azure's, and would be ignored.
			if c["openai_deployment_name"] != "" {
				k := cp + ".openai_deployment_name"
				report(line(k), k, "applies only when openai_api_type is azure or azuread"+typeSaid)
			}
		case "azure", "azuread":
			b.Provider = "azure"
			azureTyped = c["openai_api_type"] != ""
			for _, k := range []string{"openai_api_base", "openai_deployment_name", "openai_api_version"} {
				if azureTyped && c[k] == "" {
					report(line(cp), cp+"."+k, "is required when openai_api_type is "+apiType)
				}
			}
			// As MLflow's OpenAIConfig: an organization is OpenAI's.
			if c["openai_organization"] != "" {
				k := cp + ".openai_organization"
				report(line(k), k, "applies only when openai_api_type is openai"+typeSaid)
			}
		default:
			report(line(cp+".openai_api_type"), cp+".openai_api_type", "must be openai, azure or azuread")
		}
		// nameless: model.name is left out, which MLflow takes on every provider. The
		// calls go up without a model: MLflow sends none to a model server and to an
		// Azure deployment (whose URL names the model), and "model": null to the
		// others, which an OpenAI-style server reads as none. A TGI server's calls get
		// mp.namelessModel; Anthropic's Messages API takes no call without the member,
		// which goes as "" (refused as Anthropic refuses MLflow's null).
		nameless := e.Model.Name == ""
		if nameless {
			if b.Model = mp.namelessModel; b.Model == "" {
				b.NoModel = true
			}
			if b.Provider == "azure" && !azureTyped && c["openai_deployment_name"] == "" {
				k := cp + ".openai_deployment_name"
				report(line(cp), k, "is required for provider "+e.Model.Provider+" without model.name (the deployment name in the Azure portal)")
			}
		}
		if apiType == "azuread" && b.APIKey != "" {
			// An Azure AD (Entra ID) token goes in a bearer header, as MLflow sends
			// it, not in Azure's api-key header.
			if b.Headers == nil {
				b.Headers = map[string]string{}
			}
			b.Headers["Authorization"] = "Bearer " + b.APIKey
			b.APIKey = ""
		}
		if b.BaseURL == "" && b.Provider != "azure" {
			b.BaseURL = mp.defaultBase
			if apiType == "openai" {
				// Provider azure of the OpenAI type, too: OpenAI's own base.
				b.BaseURL = mlflowProviders["openai"].defaultBase
			}
		}
		b.BaseURL = mlflowBaseURL(b.BaseURL, strings.HasSuffix(e.Model.Provider, "text-generation-inference"))
		// hostedNameless: a call without a model to the provider's own API (OpenAI,
		// Anthropic, Mistral, Together AI) is refused there, as MLflow's is: the
		// endpoint loads, as in MLflow, with a warning.
		hostedNameless := ""
		if nameless && b.Provider != "azure" && b.BaseURL != "" &&
			(b.BaseURL == mp.defaultBase || apiType == "openai" && b.BaseURL == mlflowProviders["openai"].defaultBase) {
			hostedNameless = p + ".model.name"
		}
		if b.Provider == "azure" {
			setAzure(&b, c["openai_deployment_name"], c["openai_api_version"])
		}
		if v := c["anthropic_version"]; v != "" {
			b.AnthropicVersion = v
		}
		if mp.provider == "anthropic" {
			// MLflow's temperature runs from 0 to 2, Anthropic's from 0 to 1: MLflow's
			// anthropic provider halves it.
			b.ChatTemperatureScale = 0.5
		}
		if kind == "completions" && mp.viaChat {
			// MLflow's openai and mistral providers send completions to chat models.
			b.CompletionsViaChat = true
			b.CompletionsTemperatureScale = mp.temperatureScale
		}
		if b.BaseURL == "" && !azureTyped {
			report(line(cp), cp+"."+mp.baseField, "is required for provider "+e.Model.Provider)
		}
		for _, fe := range flatten(b.Validate()) {
			var kp keyProblem
			if !errors.As(fe, &kp) {
				report(line(p+".model"), p+".model", fe.Error())
				continue
			}
			if kp.Key() == "base_url" && b.BaseURL == "" || kp.Key() == "deployment" && (azureTyped || nameless) && c["openai_deployment_name"] == "" ||
				kp.Key() == "model" && e.Model.Name == "" {
				continue // reported above, with the MLflow key to set
			}
			k := mlflowKeyPath(p, mp, c, kp.Key())
			report(line(k), k, kp.Problem())
		}
		name := e.Name
		cfg.Backends[name] = b
		ec := EndpointConfig{Name: name, Type: kind}
		// No variant: one route has no other to be told from. The header, metrics
		// and log show the backend's name, which is the endpoint's, and MLflow's
		// names (any length, any letter) need not be labels.
		ec.Routes = []router.Route{{Backend: name, Weight: 100}}
		ec.mlflow = &mlflowInfo{EndpointType: typ, Provider: e.Model.Provider, Model: e.Model.Name, hostedNameless: hostedNameless}
		if e.Limit != nil {
			l := &limiter.MLflowLimit{RenewalPeriod: e.Limit.RenewalPeriod, Key: e.Limit.Key}
			ec.mlflow.Limit = l
			// Required, as MLflow's Limit has it: left out, or null, it is nil.
			callsProblem := "is required"
			if e.Limit.Calls != nil {
				var calls int
				calls, callsProblem = e.Limit.Calls.value()
				l.Calls = int64(calls)
			}
			if callsProblem != "" {
				k := p + ".limit.calls"
				report(line(k), k, callsProblem)
			}
			if err := l.Validate(); err != nil {
				for _, fe := range flatten(err) {
					var kp keyProblem
					if errors.As(fe, &kp) && (callsProblem == "" || kp.Key() != "calls") {
						k := p + ".limit." + kp.Key()
						report(line(k), k, kp.Problem())
					}
				}
			} else if callsProblem == "" {
				ec.Limits = []limiter.Limit{l.Limit()}
			}
		}
		cfg.Endpoints = append(cfg.Endpoints, ec)
		keys.entries = append(keys.entries, mlflowSource{index: i, name: name, typKey: typKey, mp: mp, config: c})
	}
	for i, r := range f.traffic {
		fromMLflowRoute(i, r, list, unfit, cfg, report)
	}
}

// fromMLflowRoute adds the endpoint an MLflow traffic route makes: of its task_type,
// with a route to each destination's backend (named after its endpoint) weighted by
// its traffic_percentage. Without a sticky key each call goes to a destination drawn
// by weight, as MLflow's TRAFFIC_SPLIT draws it; the endpoint has no limit, as in
// MLflow, whose endpoints' limits hold for calls to the endpoints themselves.
//
// The destinations are checked here, in MLflow's words. A destination refused (here,
// or at its endpoint: unfit) leaves the percentages unsummed, the sum of the others
// being that mistake again, and the endpoint without routes and marked refused, so
// that the checks of the built config do not say it a second time. An endpoint named
// twice gets one route, of the shares' sum, whose index is then not its destination's:
// the router's checks left to a route not refused (router.MaxRoutes) name no index.
func fromMLflowRoute(i int, r mlflowRoute, endpoints []mlflowEndpoint, unfit []bool, cfg *Config, report func(line int, key, problem string)) {
	line := cfg.lineOf
	p := "routes[" + strconv.Itoa(i) + "]"
	typKey := p + ".task_type"
	kind, ok := mlflowTypes[r.TaskType]
	switch {
	case r.TaskType == "":
		report(line(typKey), typKey, "is required: llm/v1/chat, llm/v1/completions or llm/v1/embeddings")
	case !ok:
		report(line(typKey), typKey, "must be llm/v1/chat, llm/v1/completions or llm/v1/embeddings")
	}
	if r.RoutingStrategy != "" && r.RoutingStrategy != "TRAFFIC_SPLIT" {
		k := p + ".routing_strategy"
		report(line(k), k, "must be TRAFFIC_SPLIT")
	}
	refused := false
	if len(r.Destinations) == 0 {
		k := p + ".destinations"
		report(line(k), k, "needs at least one destination")
		refused = true
	}
	ec := EndpointConfig{Name: r.Name, Type: kind}
	sum := 0
	for j, d := range r.Destinations {
		dp := p + ".destinations[" + strconv.Itoa(j) + "]"
		e := slices.IndexFunc(endpoints, func(e mlflowEndpoint) bool { return e.Name == d.Name })
		switch {
		case d.Name == "":
			report(line(dp+".name"), dp+".name", "is required")
			refused = true
		case e < 0:
			report(line(dp+".name"), dp+".name", "endpoint "+strconv.Quote(d.Name)+" is not in endpoints")
			refused = true
		case unfit[e]:
			refused = true // its endpoint's type or provider is reported there
		case ok:
			if typ := cmp.Or(endpoints[e].EndpointType, endpoints[e].RouteType); typ != r.TaskType {
				report(line(dp+".name"), dp+".name", "endpoint "+strconv.Quote(d.Name)+" is "+typ+", the route's task_type "+r.TaskType)
				refused = true
			}
		}
		pct, problem := 0, "is required"
		if d.TrafficPercentage != nil {
			pct, problem = d.TrafficPercentage.value()
		}
		if problem == "" && (pct < 0 || pct > 100) {
			problem = "must be 0..100"
		}
		if problem != "" {
			report(line(dp+".traffic_percentage"), dp+".traffic_percentage", problem)
			pct, refused = 0, true
		}
		sum += pct
		// An endpoint named twice is drawn by its shares' sum, as MLflow draws it; one
		// route each would be a backend routed twice.
		if k := slices.IndexFunc(ec.Routes, func(rt router.Route) bool { return rt.Backend == d.Name }); k >= 0 {
			ec.Routes[k].Weight += pct
		} else {
			ec.Routes = append(ec.Routes, router.Route{Backend: d.Name, Weight: pct})
		}
	}
	if !refused && sum != 100 {
		// Named traffic_percentage, as MLflow names the share. A percentage refused
		// above (a fraction, a word) leaves the sum unsaid: it would be that mistake
		// again.
		k := p + ".destinations"
		report(line(k), k, "traffic_percentage values add up to "+strconv.Itoa(sum)+", want 100")
		refused = true
	}
	if refused {
		ec.Routes = nil
	}
	ec.mlflow = &mlflowInfo{EndpointType: r.TaskType, trafficRoute: true, refused: refused}
	cfg.Endpoints = append(cfg.Endpoints, ec)
	cfg.mlflowKeys.entries = append(cfg.mlflowKeys.entries, mlflowSource{index: i, name: r.Name, typKey: typKey, trafficRoute: true})
}

// mlflowKeys maps the keys of a config built from an MLflow file back onto the
// file's: the checks run on the built config (and the build itself) report keys of
// it, which the file does not have.
type mlflowKeys struct {
	// list is the file's list of endpoints: endpoints, or routes in older files.
	list string
	// entries are the entries the built config's endpoints came from, in its order.
	entries []mlflowSource
}

// mlflowSource is the MLflow entry an endpoint (and its backend) was built from.
type mlflowSource struct {
	index        int
	name, typKey string
	mp           mlflowProvider
	config       map[string]string
	// trafficRoute: the entry is routes[index], a traffic route, which has no
	// backend of its own.
	trafficRoute bool
}

// key is the MLflow file's key for key, a key of the built config; keys of the
// sections beside MLflow's (server, auth …) are the same in both.
func (m *mlflowKeys) key(key string) string {
	if rest, ok := strings.CutPrefix(key, "backends."); ok {
		// The backend is named after its endpoint, whose name may hold dots: the
		// longest name that prefixes the rest is the backend's.
		var src *mlflowSource
		for i := range m.entries {
			e := &m.entries[i]
			if !e.trafficRoute && (rest == e.name || strings.HasPrefix(rest, e.name+".")) && (src == nil || len(e.name) > len(src.name)) {
				src = e
			}
		}
		if src == nil {
			return key
		}
		p := m.list + "[" + strconv.Itoa(src.index) + "]"
		field := strings.TrimPrefix(rest[len(src.name):], ".")
		if field == "" {
			return p + ".model"
		}
		return mlflowKeyPath(p, src.mp, src.config, field)
	}
	rest, ok := strings.CutPrefix(key, "endpoints[")
	if !ok {
		return key
	}
	end := strings.IndexByte(rest, ']')
	i, err := strconv.Atoi(rest[:max(end, 0)])
	if end < 0 || err != nil || i < 0 || i >= len(m.entries) {
		return key
	}
	src, rest := &m.entries[i], rest[end+1:]
	if src.trafficRoute {
		return src.routeKey(rest)
	}
	p := m.list + "[" + strconv.Itoa(src.index) + "]"
	switch {
	case rest == "" || rest == ".name":
		return p + rest
	case rest == ".type":
		return src.typKey
	case strings.HasPrefix(rest, ".limits"):
		// The one limit an MLflow endpoint has: calls per renewal_period, for key.
		_, field, _ := strings.Cut(rest, "].")
		switch field {
		case "per":
			return p + ".limit.key"
		case "requests", "burst":
			return p + ".limit.calls"
		case "window":
			return p + ".limit.renewal_period"
		}
		return p + ".limit"
	case strings.HasPrefix(rest, ".routes"), strings.HasPrefix(rest, ".fallbacks"):
		// The one route goes to the backend the model block makes.
		return p + ".model"
	}
	return p
}

// routeKey is the traffic route's key for rest, the key of the endpoint built from it
// after "endpoints[i]": its routes are the route's destinations.
func (src *mlflowSource) routeKey(rest string) string {
	p := "routes[" + strconv.Itoa(src.index) + "]"
	switch {
	case rest == "" || rest == ".name":
		return p + rest
	case rest == ".type":
		return src.typKey
	case rest == ".routes":
		return p + ".destinations"
	case strings.HasPrefix(rest, ".routes["):
		dest, field, _ := strings.Cut(rest[len(".routes"):], "].")
		dest = p + ".destinations" + strings.TrimSuffix(dest, "]") + "]"
		switch field {
		case "weight":
			return dest + ".traffic_percentage"
		case "backend", "variant":
			return dest + ".name"
		}
		return dest
	}
	return p
}

// mlflowKeyPath is the key path in the MLflow file of what sets key, a key of the
// backend built from the endpoint at p: a problem of the backend names the key to fix.
func mlflowKeyPath(p string, mp mlflowProvider, c map[string]string, key string) string {
	cp := p + ".model.config"
	switch key {
	case "base_url":
		return cp + "." + mp.baseField
	case "api_key":
		return cp + "." + mp.keyField
	case "model":
		return p + ".model.name"
	case "provider":
		return p + ".model.provider"
	case "deployment":
		if c["openai_deployment_name"] == "" {
			return p + ".model.name" // the deployment defaults to the model's name
		}
		return cp + ".openai_deployment_name"
	case "api_version":
		return cp + ".openai_api_version"
	case "anthropic_version":
		return cp + ".anthropic_version"
	case "headers.Authorization":
		return cp + "." + mp.keyField // azuread's token goes in a bearer header
	case "headers.OpenAI-Organization":
		return cp + ".openai_organization"
	}
	return p + ".model"
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

var errMLflowModel = apiError{400, "invalid_request_error", "invalid_parameter", "model",
	"The model parameter is not permitted in an endpoint invocation: the endpoint sets it."}

// invocationBody prepends the endpoint's name as "model" to an MLflow invocation body.
func invocationBody(dst, name, body []byte) ([]byte, *apiError) {
	i := 0
	for i < len(body) && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r') {
		i++
	}
	if i == len(body) || body[i] != '{' {
		if jsonscan.Valid(body) {
			return dst, &errNotObject
		}
		return dst, &errMalformed
	}
	if _, ok := jsonscan.Field(body, "model"); ok {
		return dst, &errMLflowModel
	}
	dst = append(dst, `{"model":`...)
	dst = jsonscan.AppendQuote(dst, b2s(name))
	rest := body[i+1:]
	j := 0
	for j < len(rest) && (rest[j] == ' ' || rest[j] == '\t' || rest[j] == '\n' || rest[j] == '\r') {
		j++
	}
	if j < len(rest) && rest[j] != '}' {
		dst = append(dst, ',')
	}
	return append(dst, rest...), nil
}

var (
	prefixEndpoints = []byte("/endpoints/")
	prefixGateway   = []byte("/gateway/")
	suffixInvoke    = []byte("/invocations")
	prefixAPIList   = []byte("/api/2.0/endpoints/")
)

// invocationName is the endpoint name of an MLflow invocation path,
// /endpoints/{name}/invocations or /gateway/{name}/invocations.
func invocationName(path []byte) ([]byte, bool) {
	for _, prefix := range [...][]byte{prefixEndpoints, prefixGateway} {
		if bytes.HasPrefix(path, prefix) && bytes.HasSuffix(path, suffixInvoke) && len(path) > len(prefix)+len(suffixInvoke) {
			return path[len(prefix) : len(path)-len(suffixInvoke)], true
		}
	}
	return nil, false
}

// serveOther answers the routes beside OpenAI's: MLflow's invocations and listings,
// and the health check MLflow clients call.
func (s *Server) serveOther(ctx *fasthttp.RequestCtx) {
	path := ctx.Path()
	if name, ok := invocationName(path); ok {
		s.serveCall(ctx, 0, name)
		return
	}
	if string(path) == "/health" {
		// A probe: answered, not counted as a request.
		ownAnswer(ctx)
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyString(`{"status":"OK"}`)
		return
	}
	r := s.ownRequest(ctx)
	switch {
	case string(path) == "/api/2.0/endpoints" || bytes.HasPrefix(path, prefixAPIList):
		if !ctx.IsGet() && !ctx.IsHead() {
			r.fail(ctx, methodNotAllowed(ctx, strGetHead))
			return
		}
		name := bytes.TrimPrefix(bytes.TrimPrefix(path, []byte("/api/2.0/endpoints")), []byte("/"))
		if raw, ok := bytes.CutPrefix(ctx.URI().PathOriginal(), prefixAPIList); ok && len(raw) > 0 {
			name = r.pathName(raw)
		}
		if e := r.serveMLflowEndpoints(ctx, name); e != nil {
			r.fail(ctx, e)
			return
		}
		r.finish(ctx, ctx.Response.StatusCode())
	default:
		r.fail(ctx, &errNotFound)
	}
}

// serveMLflowEndpoints lists endpoints (or shows one) as MLflow's gateway does.
func (r *request) serveMLflowEndpoints(ctx *fasthttp.RequestCtx, name []byte) *apiError {
	rt := r.rt
	if rt == nil {
		return &errShuttingDown
	}
	// Through auth, as an API call: a wrong key is marked on the trace.
	if e := r.auth(ctx); e != nil {
		return e
	}
	var allowed []bool
	if r.key != nil {
		allowed = r.key.allowed
	}
	var b []byte
	if len(name) > 0 {
		ep := rt.endpoint(name)
		if ep == nil || (allowed != nil && !allowed[ep.idx]) || mlflowTrafficRoute(&rt.cfg.Endpoints[ep.idx]) {
			ctx.SetStatusCode(404)
			ctx.Response.Header.SetContentTypeBytes(strJSON)
			b = append(b, `{"detail":`...)
			b = jsonscan.AppendQuote(b, "The endpoint '"+string(name)+"' is not present or active on the server. Please verify the endpoint name.")
			ctx.SetBody(append(b, '}'))
			r.errKind = "model_not_found"
			return nil
		}
		b = appendMLflowEndpoint(b, &rt.cfg.Endpoints[ep.idx], rt.cfg)
	} else {
		b = append(b, `{"endpoints":[`...)
		n := 0
		for i := range rt.cfg.Endpoints {
			if allowed != nil && !allowed[i] || mlflowTrafficRoute(&rt.cfg.Endpoints[i]) {
				continue
			}
			if n > 0 {
				b = append(b, ',')
			}
			n++
			b = appendMLflowEndpoint(b, &rt.cfg.Endpoints[i], rt.cfg)
		}
		b = append(b, "]}"...)
	}
	ctx.Response.Header.SetContentTypeBytes(strJSON)
	ctx.SetBody(b)
	return nil
}

// mlflowTrafficRoute reports whether ec is an MLflow traffic route's endpoint, which
// MLflow serves but does not list.
func mlflowTrafficRoute(ec *EndpointConfig) bool { return ec.mlflow != nil && ec.mlflow.trafficRoute }

func appendMLflowEndpoint(b []byte, ec *EndpointConfig, cfg *Config) []byte {
	info := ec.mlflow
	if info == nil {
		info = &mlflowInfo{EndpointType: "llm/v1/" + ec.Type}
		if len(ec.Routes) > 0 {
			bc := cfg.Backends[ec.Routes[0].Backend]
			info.Provider, info.Model = bc.Provider, bc.Model
		}
	}
	b = append(b, `{"name":`...)
	b = jsonscan.AppendQuote(b, ec.Name)
	b = append(b, `,"endpoint_type":`...)
	b = jsonscan.AppendQuote(b, info.EndpointType)
	b = append(b, `,"model":{"name":`...)
	if info.Model == "" {
		b = append(b, "null"...) // model.name left out, as MLflow lists it
	} else {
		b = jsonscan.AppendQuote(b, info.Model)
	}
	b = append(b, `,"provider":`...)
	b = jsonscan.AppendQuote(b, info.Provider)
	b = append(b, `},"endpoint_url":`...)
	b = jsonscan.AppendQuote(b, "/endpoints/"+ec.Name+"/invocations")
	b = append(b, `,"limit":`...)
	if l := info.Limit; l != nil {
		b = append(b, `{"calls":`...)
		b = strconv.AppendInt(b, l.Calls, 10)
		b = append(b, `,"key":`...)
		if l.Key == "" {
			b = append(b, "null"...)
		} else {
			b = jsonscan.AppendQuote(b, l.Key)
		}
		b = append(b, `,"renewal_period":`...)
		b = jsonscan.AppendQuote(b, l.RenewalPeriod)
		b = append(b, '}')
	} else {
		b = append(b, "null"...)
	}
	return append(b, '}')
}

// b2s views b as a string without copying, for a call that does not keep it.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// setAzure fills an Azure OpenAI backend from MLflow's openai_deployment_name and
// openai_api_version.
func setAzure(b *providers.Config, deployment, version string) {
	b.Deployment, b.APIVersion = deployment, version
	if b.Deployment == "" {
		b.Deployment = b.Model
	}
}

// mlflowBaseURL drops the trailing slashes of a base URL's path, and with v1
// ends the path in /v1 (a text-generation-inference server's OpenAI routes);
// a query or fragment stays as written, after the path.
func mlflowBaseURL(u string, v1 bool) string {
	if u == "" {
		return u
	}
	path, rest := u, ""
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		path, rest = u[:i], u[i:]
	}
	path = strings.TrimRight(path, "/")
	if v1 && !strings.HasSuffix(path, "/v1") {
		path += "/v1"
	}
	return path + rest
}
