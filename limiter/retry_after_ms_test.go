package limiter

import (
	"testing"
	"time"
)

func TestRetryAfterMs(t *testing.T) {
	tests := []struct {
		name string
		d    time.Duration
		want int64
	}{
		{"zero still waits a millisecond", 0, 1},
		{"a microsecond rounds up", time.Microsecond, 1},
		{"exactly a millisecond", time.Millisecond, 1},
		{"just over rounds up", time.Millisecond + time.Nanosecond, 2},
		{"a per-second limit's wait", 183*time.Millisecond + 400*time.Microsecond, 184},
		{"a day", 24 * time.Hour, 86_400_000},
		{"the longest a bucket is held behind", time.Duration(maxDebt), int64(maxDebt / float64(time.Millisecond))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := RetryAfterMs(tc.d); got != tc.want {
				t.Errorf("RetryAfterMs(%v) = %d, want %d", tc.d, got, tc.want)
			}
		})
	}
}
