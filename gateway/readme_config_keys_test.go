package gateway

import (
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// Every key the config takes is one README names, so that an operator can learn it
// there: a key taken but never documented is one nobody sets on purpose, or one set
// from a guess. The check is by name: written as a YAML key (`name:`), in backticks,
// alone or at the end of a dotted path (`limiter.redis.db`), or in a listing of a
// mapping's keys (`mock: {ttft, tpot}`).
func TestReadmeNamesEveryConfigKey(t *testing.T) {
	src, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(src)
	paths := map[string][]string{}
	seen := map[reflect.Type]bool{}
	var walk func(typ reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Array || typ.Kind() == reflect.Map {
			if typ.Kind() == reflect.Map {
				path += ".NAME"
			}
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] {
			return
		}
		seen[typ] = true
		defer delete(seen, typ)
		for i := range typ.NumField() {
			f := typ.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || tag == "-" || tag == "" {
				continue
			}
			p := strings.TrimPrefix(path+"."+tag, ".")
			paths[tag] = append(paths[tag], p)
			walk(f.Type, p)
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	var missing []string
	for name, at := range paths {
		if !readmeNamesKey(readme, name) {
			missing = append(missing, strings.Join(at, ", "))
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("README does not name the config key %s", m)
	}
}

// readmeNamesKey reports whether readme names the config key name in one of the forms
// TestReadmeNamesEveryConfigKey takes: name: after a character that cannot be part of
// a key, `name` or `a.dotted.name` in backticks, or name between { or , and , or }.
// It looks only around each place name occurs: a regular expression per key over the
// whole README took seconds under -race.
func readmeNamesKey(readme, name string) bool {
	keyByte := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' }
	space := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' }
	for off := 0; ; {
		i := strings.Index(readme[off:], name)
		if i < 0 {
			return false
		}
		i += off
		j := i + len(name)
		off = i + 1
		before := byte(0)
		if i > 0 {
			before = readme[i-1]
		}
		after := byte(0)
		if j < len(readme) {
			after = readme[j]
		}
		if after == ':' && (i == 0 || !keyByte(before)) {
			return true
		}
		if after == '`' {
			k := i
			if before == '.' {
				for k > 0 && (keyByte(readme[k-1]) || readme[k-1] == '.') {
					k--
				}
			}
			if k > 0 && readme[k-1] == '`' {
				return true
			}
		}
		k := i
		for k > 0 && space(readme[k-1]) {
			k--
		}
		m := j
		for m < len(readme) && space(readme[m]) {
			m++
		}
		if k > 0 && (readme[k-1] == '{' || readme[k-1] == ',') && m < len(readme) && (readme[m] == ',' || readme[m] == '}') {
			return true
		}
	}
}
