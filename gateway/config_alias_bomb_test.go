package gateway

import (
	"strconv"
	"strings"
	"testing"
)

// A YAML bomb, anchors each merging or listing the one before several times, makes
// yaml.v3 stop with "document contains excessive aliasing", which names no line. The
// problem is placed at the alias where the aliases read so far expand past what the
// decoder takes, with its key path, and it is the one problem reported.
func TestConfigAliasBombNamesLineAndKey(t *testing.T) {
	var b strings.Builder
	b.WriteString("backends:\n  b0: &b0 {provider: mock, model: m}\n")
	for i := 1; i < 40; i++ {
		prev := "*b" + strconv.Itoa(i-1)
		b.WriteString("  b" + strconv.Itoa(i) + ": &b" + strconv.Itoa(i) + "\n    <<: [" + strings.Repeat(prev+", ", 7) + prev + "]\n")
	}
	b.WriteString("endpoints:\n  - {name: chat, type: chat, routes: [{backend: b39, weight: 100}]}\n")
	_, problems := parseProblems(t, b.String(), nil)
	// b6's list is where the expansion passes 400000 values: lines 2 and 3 hold b0 and
	// b1, each later backend two lines.
	want := "t.yaml:14: backends.b6.<<: the document's aliases expand to too many values (a YAML bomb?)"
	if len(problems) != 1 || problems[0] != want {
		t.Fatalf("problems = %q, want [%q]", problems, want)
	}
}
