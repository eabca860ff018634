package limiter

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisLog carries the Redis client's own messages (a pool that cannot dial, a
// Sentinel switching masters) to the gateway's logger, so that they follow its level
// and format instead of going to stderr as plain text. go-redis has one logger per
// process: the latest limiter's logger receives them.
var (
	redisLog     atomic.Pointer[slog.Logger]
	redisLogOnce sync.Once
)

// redisLogEvery is how often one kind of Redis client message is logged. While
// Redis is down the pool reports every failed dial, several a second for each
// replica; one line per kind and interval carries them, counting those it stands for.
var redisLogEvery atomic.Int64

func init() { redisLogEvery.Store(int64(10 * time.Second)) }

// redisLogKinds bounds the kinds of message kept: go-redis has a few dozen call
// sites, each one format string.
const redisLogKinds = 256

type redisLogger struct{}

// redisLogState is one kind of message's window: a message within it is counted,
// not logged, and the last one counted is logged with the count when it closes.
type redisLogState struct {
	until      time.Time
	suppressed int
	last       string
	lastCtx    context.Context
	flushing   bool
}

var redisLogKindsMu sync.Mutex
var redisLogByKind = map[string]*redisLogState{}

func (redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if redisLog.Load() == nil {
		return
	}
	msg := strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")
	now := time.Now()
	redisLogKindsMu.Lock()
	st := redisLogByKind[format]
	if st == nil {
		if len(redisLogByKind) >= redisLogKinds {
			clear(redisLogByKind)
		}
		st = &redisLogState{}
		redisLogByKind[format] = st
	}
	if now.Before(st.until) {
		st.suppressed++
		st.last, st.lastCtx = msg, ctx
		if !st.flushing {
			st.flushing = true
			time.AfterFunc(st.until.Sub(now), func() { flushRedisLog(st, true) })
		}
		redisLogKindsMu.Unlock()
		return
	}
	// The window closed; messages counted in it and not yet flushed (its timer has
	// yet to run) go out with this one.
	n := st.suppressed
	st.suppressed, st.last, st.lastCtx = 0, "", nil
	st.until = now.Add(time.Duration(redisLogEvery.Load()))
	redisLogKindsMu.Unlock()
	writeRedisLog(ctx, msg, n)
}

// flushRedisLog closes st's window: the last message counted in it is logged with
// the number of the others, and a new window opens, so that a fault that goes on is
// reported once per interval.
func flushRedisLog(st *redisLogState, timer bool) {
	redisLogKindsMu.Lock()
	if timer {
		st.flushing = false
	}
	n, msg, ctx := st.suppressed, st.last, st.lastCtx
	st.suppressed, st.last, st.lastCtx = 0, "", nil
	if n > 0 {
		st.until = time.Now().Add(time.Duration(redisLogEvery.Load()))
	}
	redisLogKindsMu.Unlock()
	if n > 0 {
		writeRedisLog(ctx, msg, n-1) // msg is one of the n
	}
}

// flushRedisLogs writes every window's held-back messages now, as their timers would.
func flushRedisLogs() {
	redisLogKindsMu.Lock()
	var held []*redisLogState
	for _, st := range redisLogByKind {
		if st.suppressed > 0 {
			held = append(held, st)
		}
	}
	redisLogKindsMu.Unlock()
	for _, st := range held {
		// The window's timer, still pending, will find nothing to write.
		flushRedisLog(st, false)
	}
}

// writeRedisLog logs msg, saying how many messages of its kind were left out of
// the log before it.
func writeRedisLog(ctx context.Context, msg string, repeated int) {
	l := redisLog.Load()
	if l == nil {
		return
	}
	if repeated > 0 {
		l.WarnContext(ctx, "limiter: redis client: "+msg, "omitted", repeated, "interval", time.Duration(redisLogEvery.Load()).String())
		return
	}
	l.WarnContext(ctx, "limiter: redis client: "+msg)
}

// logRedisTo sends the Redis client's messages to l from now on.
func logRedisTo(l *slog.Logger) {
	redisLog.Store(l)
	redisLogOnce.Do(func() { redis.SetLogger(redisLogger{}) })
}
