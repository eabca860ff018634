package limiter

import (
	"reflect"
	"testing"
)

func TestMergeAdjusts(t *testing.T) {
	s := &redisStore{adjIndex: make(map[keyID]int)}
	in := []adjustOp{
		{op: opAdjust, tag: 1, bucket: 10, interval: 2, delta: 5},
		{op: opRelease, tag: 1, bucket: 11, member: 7},
		{op: opAdjust, tag: 2, bucket: 10, interval: 2, delta: -3},
		{op: opAdjust, tag: 1, bucket: 10, interval: 2, delta: -8},
		{op: opRelease, tag: 1, bucket: 11, member: 8},
		{op: opAdjust, tag: 1, bucket: 10, interval: 2, delta: 1},
	}
	// A charge and a refund of one bucket stay apart, in their order (a refund after a
	// lowering reload is no negative charge: check.lua's refund); the charge after
	// the refund goes with neither.
	want := []adjustOp{
		{op: opAdjust, tag: 1, bucket: 10, interval: 2, delta: 5},
		{op: opRelease, tag: 1, bucket: 11, member: 7},
		{op: opAdjust, tag: 2, bucket: 10, interval: 2, delta: -3},
		{op: opAdjust, tag: 1, bucket: 10, interval: 2, delta: -8},
		{op: opRelease, tag: 1, bucket: 11, member: 8},
		{op: opAdjust, tag: 1, bucket: 10, interval: 2, delta: 1},
	}
	if got := s.mergeAdjusts(in); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	// Settlements of one sign fold into one, charges and refunds apart.
	runs := []adjustOp{
		{op: opAdjust, tag: 1, bucket: 10, interval: 2, delta: 5},
		{op: opAdjust, tag: 1, bucket: 10, interval: 2, delta: 3},
		{op: opAdjust, tag: 1, bucket: 10, interval: 2, delta: -8},
		{op: opAdjust, tag: 1, bucket: 10, interval: 2, delta: -1},
		{op: opAdjust, tag: 1, bucket: 10, interval: 2, delta: 2},
		{op: opAdjust, tag: 1, bucket: 10, interval: 2, delta: 4},
	}
	wantRuns := []adjustOp{
		{op: opAdjust, tag: 1, bucket: 10, interval: 2, delta: 8},
		{op: opAdjust, tag: 1, bucket: 10, interval: 2, delta: -9},
		{op: opAdjust, tag: 1, bucket: 10, interval: 2, delta: 6},
	}
	if got := s.mergeAdjusts(runs); !reflect.DeepEqual(got, wantRuns) {
		t.Fatalf("runs: got %+v\nwant %+v", got, wantRuns)
	}
	// A second round starts from an empty index.
	again := []adjustOp{{op: opAdjust, tag: 2, bucket: 10, interval: 2, delta: 4}, {op: opAdjust, tag: 1, bucket: 10, interval: 2, delta: 1}}
	if got := s.mergeAdjusts(again); len(got) != 2 || got[0].delta != 4 || got[1].delta != 1 {
		t.Fatalf("second round %+v", got)
	}
	// Settlements under rules of different bursts record different spans in a bucket
	// that owes nothing (check.lua, adjust): they stay apart.
	spans := []adjustOp{{op: opAdjust, tag: 1, bucket: 10, interval: 2, tau: 20, delta: 4}, {op: opAdjust, tag: 1, bucket: 10, interval: 2, tau: 40, delta: 1}}
	if got := s.mergeAdjusts(spans); len(got) != 2 {
		t.Fatalf("settlements of different spans merged: %+v", got)
	}
}
