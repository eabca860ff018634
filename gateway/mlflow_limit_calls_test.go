package gateway

import (
	"errors"
	"testing"
)

// TestMLflowLimitCallsAsPydantic: a limit's calls is read as MLflow's pydantic 2
// Limit model reads its int field in lax mode, as traffic_percentage is: a whole
// number however written (a string of one, with whitespace, a sign, underscores
// between digits or a point and zeros after it; a float without a fraction; true as
// 1) loads as that many calls a period, and what pydantic refuses (a fraction, a
// word, a string of another notation, a value of another kind) is refused at its
// file, line and key, as are calls that are not positive (MLflow's limits library
// reads no "-1/minute") or past the limiter's bound.
func TestMLflowLimitCallsAsPydantic(t *testing.T) {
	file := func(calls string) string {
		return "endpoints:\n" + mlflowChat("chat") + "    limit: {renewal_period: minute, calls: " + calls + "}\n"
	}
	for _, c := range []struct {
		calls string
		want  int64
	}{
		{`10`, 10},
		{`"10"`, 10},
		{`'10'`, 10},
		{`10.0`, 10},
		{`"10.0"`, 10},
		{`" 10 "`, 10},
		{`"+10"`, 10},
		{`"1_000"`, 1000},
		{`"010"`, 10},
		{`!!str 10`, 10},
		{`1e3`, 1000},
		{`true`, 1},
	} {
		t.Run(c.calls, func(t *testing.T) {
			cfg, err := ParseConfig("ml.yaml", []byte(file(c.calls)), env(nil))
			if err != nil {
				t.Fatal(err)
			}
			ec := cfg.Endpoints[0]
			if len(ec.Limits) != 1 || ec.Limits[0].Requests != c.want || ec.Limits[0].Window != "minute" {
				t.Fatalf("limits %+v, want %d requests a minute", ec.Limits, c.want)
			}
			if l := ec.mlflow.Limit; l == nil || l.Calls != c.want {
				t.Fatalf("listed limit %+v, want calls %d", l, c.want)
			}
		})
	}
	const key = "ml.yaml:9: endpoints[0].limit.calls: "
	for _, c := range []struct{ calls, want string }{
		{`ten`, `must be a whole number, not "ten"`},
		{`"ten"`, `must be a whole number, not "ten"`},
		{`"1.5"`, `must be a whole number, not "1.5"`},
		{`1.5`, "must be a whole number, not 1.5"},
		{`"10."`, `must be a whole number, not "10."`},
		{`"0xA"`, `must be a whole number, not "0xA"`},
		{`"1e3"`, `must be a whole number, not "1e3"`},
		{`""`, `must be a whole number, not ""`},
		{`.inf`, "must be a whole number, not .inf"},
		{`[10]`, "must be a whole number, not a list"},
		{`{n: 10}`, "must be a whole number, not a mapping"},
		{`-1`, "must be positive"},
		{`"-1"`, "must be positive"},
		{`0`, "must be positive"},
		{`false`, "must be positive"},
		{`"99999999999999999999"`, "must be at most 1099511627776"},
		{`99999999999999999999`, "must be at most 1099511627776"},
		{`1e30`, "must be at most 1099511627776"},
	} {
		t.Run(c.calls, func(t *testing.T) {
			_, err := ParseConfig("ml.yaml", []byte(file(c.calls)), env(nil))
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
