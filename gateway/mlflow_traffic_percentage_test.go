package gateway

import (
	"errors"
	"strconv"
	"testing"

	"github.com/tollgate/tollgate/router"
)

// TestMLflowTrafficPercentageAsPydantic: a traffic_percentage is read as MLflow's
// pydantic 2 model reads its int field in lax mode: a whole number however written
// (a string of one, with whitespace, a sign, underscores between digits or a point
// and zeros after it; a float without a fraction; true and false as 1 and 0) loads
// as that share, and what pydantic refuses (a fraction, a word, a string of another
// notation, a value of another kind) is refused at its file, line and key, as is a
// share out of 0..100.
func TestMLflowTrafficPercentageAsPydantic(t *testing.T) {
	file := func(value, rest string) string {
		return "endpoints:\n" + mlflowChat("chat1") + mlflowChat("chat2") + `routes:
  - name: r
    task_type: llm/v1/chat
    destinations:
      - name: chat1
        traffic_percentage: ` + value + `
      - {name: chat2, traffic_percentage: ` + rest + `}
`
	}
	for _, c := range []struct {
		value string
		want  int
	}{
		{`50`, 50},
		{`"50"`, 50},
		{`'50'`, 50},
		{`50.0`, 50},
		{`"50.0"`, 50},
		{`"50.00"`, 50},
		{`" 50 "`, 50},
		{`"\t50\n"`, 50},
		{`"+50"`, 50},
		{`"5_0"`, 50},
		{`"5_0.0"`, 50},
		{`"0050"`, 50},
		{`!!str 50`, 50},
		{`"30"`, 30},
		{`"-0"`, 0},
		{`true`, 1},
		{`false`, 0},
	} {
		t.Run(c.value, func(t *testing.T) {
			rest := 100 - c.want
			cfg, err := ParseConfig("ml.yaml", []byte(file(c.value, strconv.Itoa(rest))), env(nil))
			if err != nil {
				t.Fatal(err)
			}
			ep := cfg.Endpoints[len(cfg.Endpoints)-1]
			want := []router.Route{{Backend: "chat1", Weight: c.want}, {Backend: "chat2", Weight: rest}}
			if ep.Name != "r" || len(ep.Routes) != 2 || ep.Routes[0] != want[0] || ep.Routes[1] != want[1] {
				t.Fatalf("route %s: %+v, want %+v", ep.Name, ep.Routes, want)
			}
		})
	}
	const key = "ml.yaml:21: routes[0].destinations[0].traffic_percentage: "
	for _, c := range []struct{ value, want string }{
		{`50.5`, "must be a whole number, not 50.5"},
		{`"50.5"`, `must be a whole number, not "50.5"`},
		{`fifty`, `must be a whole number, not "fifty"`},
		{`"50."`, `must be a whole number, not "50."`},
		{`"0x32"`, `must be a whole number, not "0x32"`},
		{`"1e2"`, `must be a whole number, not "1e2"`},
		{`"5__0"`, `must be a whole number, not "5__0"`},
		{`"_50"`, `must be a whole number, not "_50"`},
		{`"+-50"`, `must be a whole number, not "+-50"`},
		{`"5 0"`, `must be a whole number, not "5 0"`},
		{`"٥٠"`, `must be a whole number, not "٥٠"`},
		{`""`, `must be a whole number, not ""`},
		{`.inf`, "must be a whole number, not .inf"},
		{`.nan`, "must be a whole number, not .nan"},
		{`[50]`, "must be a whole number, not a list"},
		{`{v: 50}`, "must be a whole number, not a mapping"},
		{`2001-12-14`, "must be a whole number, not a date"},
		{`!pct 50`, "must be a whole number, not a value tagged !pct"},
		{`!!int fifty`, "must be a whole number, not fifty"},
		{`18446744073709551616`, "must be 0..100"},
		{`"150"`, "must be 0..100"},
		{`"-5"`, "must be 0..100"},
		{`"99999999999999999999"`, "must be 0..100"},
		{`99999999999999999999`, "must be 0..100"},
		{`1e30`, "must be 0..100"},
	} {
		t.Run(c.value, func(t *testing.T) {
			_, err := ParseConfig("ml.yaml", []byte(file(c.value, "50")), env(nil))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want %s%s", err, key, c.want)
			}
			if got := ce.Error(); got != key+c.want {
				t.Fatalf("err =\n%s\nwant\n%s%s", got, key, c.want)
			}
		})
	}
}
