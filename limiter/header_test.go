package limiter

import (
	"testing"
	"time"
)

func TestAppendRetryAfter(t *testing.T) {
	tests := []struct {
		name string
		d    time.Duration
		want string
	}{
		{"zero still waits a second", 0, "1"},
		{"a millisecond rounds up", time.Millisecond, "1"},
		{"exactly one second", time.Second, "1"},
		{"just over rounds up", time.Second + time.Nanosecond, "2"},
		{"minutes", 6*time.Minute + 500*time.Millisecond, "361"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(AppendRetryAfter([]byte("x"), tc.d)); got != "x"+tc.want {
				t.Errorf("AppendRetryAfter(%v) = %q, want %q", tc.d, got, "x"+tc.want)
			}
		})
	}
}

func TestAppendReset(t *testing.T) {
	tests := []struct {
		name string
		d    time.Duration
		want string
	}{
		{"zero", 0, "0s"},
		{"negative", -time.Second, "0s"},
		{"sub-millisecond rounds up", 10 * time.Microsecond, "1ms"},
		{"milliseconds", 120 * time.Millisecond, "120ms"},
		{"fractional seconds", 8640 * time.Millisecond, "8.64s"},
		{"minutes", 6 * time.Minute, "6m0s"},
		{"hours", time.Hour + 1500*time.Millisecond, "1h0m1.5s"},
		{"rounds up to the next millisecond", time.Second + time.Nanosecond, "1.001s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(AppendReset(nil, tc.d)); got != tc.want {
				t.Errorf("AppendReset(%v) = %q, want %q", tc.d, got, tc.want)
			}
		})
	}
}

// FuzzAppendReset checks the header against Go's own duration notation, which is the
// notation OpenAI's headers use.
func FuzzAppendReset(f *testing.F) {
	for _, d := range []int64{0, 1, 999999, 1e6, 1e9, 1e9 + 1, 86400e9, 1<<62 - 1} {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, d int64) {
		if d <= 0 || d > 1<<62 {
			return
		}
		ms := (time.Duration(d) + time.Millisecond - 1) / time.Millisecond
		want := (ms * time.Millisecond).String()
		if got := string(AppendReset(nil, time.Duration(d))); got != want {
			t.Fatalf("AppendReset(%d) = %q, want %q", d, got, want)
		}
	})
}
