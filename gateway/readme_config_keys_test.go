package gateway

import (
	"os"
	"reflect"
	"regexp"
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
		named := regexp.MustCompile("(^|[^a-z0-9_])" + name + ":|`([a-z0-9_.]*\\.)?" + name + "`|[{,]\\s*" + name + "\\s*[,}]")
		if !named.MatchString(readme) {
			missing = append(missing, strings.Join(at, ", "))
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("README does not name the config key %s", m)
	}
}
