package limiter

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

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

type redisLogger struct{}

func (redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if l := redisLog.Load(); l != nil {
		msg := strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")
		l.WarnContext(ctx, "limiter: redis client: "+msg)
	}
}

// logRedisTo sends the Redis client's messages to l from now on.
func logRedisTo(l *slog.Logger) {
	redisLog.Store(l)
	redisLogOnce.Do(func() { redis.SetLogger(redisLogger{}) })
}
