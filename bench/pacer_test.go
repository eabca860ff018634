package main

import (
	"testing"
	"time"
)

func TestPacerAt(t *testing.T) {
	cases := []struct {
		name string
		rate float64
		i    int64
		want time.Duration
	}{
		{"first is at zero", 1000, 0, 0},
		{"1000/s is 1 ms apart", 1000, 3, 3 * time.Millisecond},
		{"fractional rate", 3, 1, 333333333},
		{"no drift after a million", 1000, 1_000_000, 1000 * time.Second},
		{"high rate", 200000, 7, 35 * time.Microsecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := (pacer{rate: tc.rate}).at(tc.i); got != tc.want {
				t.Fatalf("at(%d) = %v, want %v", tc.i, got, tc.want)
			}
		})
	}
}

func TestPacerCount(t *testing.T) {
	cases := []struct {
		name string
		rate float64
		d    time.Duration
		want int64
	}{
		{"zero duration", 1000, 0, 0},
		{"negative duration", 1000, -time.Second, 0},
		{"one second at 1000/s", 1000, time.Second, 1000},
		{"boundary excluded", 10, 200 * time.Millisecond, 2},
		{"just past boundary", 10, 200*time.Millisecond + 1, 3},
		{"first request at time zero", 10, 1, 1},
		{"fractional rate", 3, time.Second, 3},
		{"warm-up plus run", 50, 1200 * time.Millisecond, 60},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := (pacer{rate: tc.rate}).count(tc.d); got != tc.want {
				t.Fatalf("count(%v) = %d, want %d", tc.d, got, tc.want)
			}
		})
	}
}

func TestPacerCountMatchesAt(t *testing.T) {
	for _, rate := range []float64{1, 3, 7.5, 333, 1000, 12345, 99999} {
		p := pacer{rate: rate}
		for i := int64(0); i < 2000; i += 37 {
			at := p.at(i)
			// Exactly i requests are strictly before at(i), i+1 at or before.
			if got := p.count(at); got != i {
				t.Fatalf("rate %v: count(at(%d)) = %d", rate, i, got)
			}
			if got := p.due(at, 1<<40); got != i+1 {
				t.Fatalf("rate %v: due(at(%d)) = %d", rate, i, got)
			}
		}
	}
}

func TestPacerDue(t *testing.T) {
	p := pacer{rate: 100}
	cases := []struct {
		name  string
		e     time.Duration
		total int64
		want  int64
	}{
		{"before start", -time.Millisecond, 10, 0},
		{"at start the first is due", 0, 10, 1},
		{"mid-way", 25 * time.Millisecond, 10, 3},
		{"capped at total", time.Hour, 10, 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.due(tc.e, tc.total); got != tc.want {
				t.Fatalf("due(%v) = %d, want %d", tc.e, got, tc.want)
			}
		})
	}
}

func TestWaiterReturnsForPastDeadline(t *testing.T) {
	// A deadline already passed must not block: the pacer relies on it to
	// catch up after falling behind.
	waiter{}.until(time.Now().Add(-time.Second))
	waiter{spin: time.Millisecond}.until(time.Now().Add(-time.Second))
}
