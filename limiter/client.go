package limiter

import (
	"time"

	"github.com/redis/go-redis/v9"
)

// Client opens a go-redis client for this config (a single server, a Cluster or a
// Sentinel-managed master) with timeout on dialing and on each command, for the other
// parts of the gateway that share state through the same Redis.
func (r *RedisConfig) Client(timeout time.Duration) (redis.UniversalClient, error) {
	c, _, err := newClient(r, timeout)
	return c, err
}
