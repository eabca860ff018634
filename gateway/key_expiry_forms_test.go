package gateway

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestKeyExpiryYearsWrittenBack: an expires_at whose instant falls outside the years
// 0001-9999 in UTC ("9999-12-31T23:59:59-05:00", "0000-01-01T00:00:00+01:00") would be
// written back by /admin/keys and the refusal as no RFC 3339 timestamp: refused at load,
// naming the key (or, were it loaded, written back as one).
func TestKeyExpiryYearsWrittenBack(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"9999-12-31T23:59:59-05:00", "0000-01-01T00:00:00+01:00"} {
		t.Run(v, func(t *testing.T) {
			cfg := expiryConfig("127.0.0.1:9", v)
			if _, err := ParseConfig("prod.yaml", []byte(cfg), env(nil)); err != nil {
				if strings.Contains(err.Error(), "auth.keys[0].expires_at") {
					return // refused at load, naming the key: fine too
				}
				t.Fatalf("config refused for another reason: %v", err)
			}
			g := startGateway(t, cfg)
			got, _ := adminKeyView(t, g, "temp")["expires_at"].(string)
			want, _ := time.Parse(time.RFC3339, v)
			at, err := time.Parse(time.RFC3339, got)
			if err != nil || !at.Equal(want) {
				t.Errorf("/admin/keys expires_at %q (RFC 3339 parse: %v), want an RFC 3339 timestamp in UTC for %s, or the value refused at load naming auth.keys[0].expires_at", got, err, v)
			}
			var decoded struct {
				ExpiresAt time.Time `json:"expires_at"`
			}
			raw, _ := json.Marshal(map[string]string{"expires_at": got})
			if err := json.Unmarshal(raw, &decoded); err != nil {
				t.Errorf("decoding /admin/keys expires_at into time.Time: %v", err)
			}
		})
	}
}

// TestKeyExpiryLowerCaseTZ: RFC 3339 5.6 allows t and z in lower case; the config and
// `tollgate key --expires-at` take them.
func TestKeyExpiryLowerCaseTZ(t *testing.T) {
	t.Parallel()
	want := time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC)
	for _, v := range []string{"2026-12-31t23:59:59z", "2026-12-31T23:59:59z", "2026-12-31t23:59:59Z"} {
		t.Run(v, func(t *testing.T) {
			if _, err := ParseConfig("prod.yaml", []byte(expiryConfig("127.0.0.1:9", v)), env(nil)); err != nil {
				t.Fatalf("config refused: %v, want %s taken as %s", err, v, want.Format(time.RFC3339))
			}
			if at, err := ParseExpiresAt(v); err != nil || !at.Equal(want) {
				t.Errorf("ParseExpiresAt = %v, %v, want %s", at, err, want.Format(time.RFC3339))
			}
		})
	}
}

// TestKeyExpiryOffsetRange: an offset RFC 3339 does not allow ("+24:00", "+23:60",
// "-24:00": time.Parse takes them, moving the instant a whole day) is refused at its key.
func TestKeyExpiryOffsetRange(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"2026-12-31T23:59:59+24:00", "2026-12-31T23:59:59+23:60", "2026-12-31T23:59:59-24:00"} {
		t.Run(v, func(t *testing.T) {
			_, err := ParseConfig("prod.yaml", []byte(expiryConfig("127.0.0.1:9", v)), env(nil))
			if err == nil || !strings.Contains(err.Error(), "prod.yaml:12: auth.keys[0].expires_at") {
				at, _ := ParseExpiresAt(v)
				t.Errorf("config %v (the key expiring at %s), want prod.yaml:12: auth.keys[0].expires_at refused", errOrLoaded(err), expiryText(at))
			}
		})
	}
}

func errOrLoaded(err error) string {
	if err == nil {
		return "loaded"
	}
	return "refused otherwise: " + err.Error()
}
