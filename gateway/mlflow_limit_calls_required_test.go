package gateway

import (
	"errors"
	"testing"
)

// A limit whose calls is left out, or written with no value (calls: or calls: ~,
// which YAML reads as null), is refused as MLflow's Limit model refuses it: calls is
// required, as a destination's traffic_percentage is, and the problem says so rather
// than that a number nobody wrote must be positive.
func TestMLflowLimitCallsRequired(t *testing.T) {
	const want = "ml.yaml:9: endpoints[0].limit.calls: is required"
	for _, limit := range []string{
		"{renewal_period: minute}",
		"{renewal_period: minute, calls: }",
		"{renewal_period: minute, calls: ~}",
		"{renewal_period: minute, calls: null}",
	} {
		t.Run(limit, func(t *testing.T) {
			_, err := ParseConfig("ml.yaml", []byte("endpoints:\n"+mlflowChat("chat")+"    limit: "+limit+"\n"), env(nil))
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Error() != want {
				t.Fatalf("err =\n%v\nwant\n%s", err, want)
			}
		})
	}
}
