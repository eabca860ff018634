package gateway

// Repeated Kubernetes volume updates (the old timestamped directory deleted each
// time) for the config and the serving certificate.

import (
	"path/filepath"
	"testing"
	"time"
)

// Operator: a ConfigMap mounted as a whole volume, updated three times in a row
// (kubectl apply each time). The kubelet deletes the old timestamped directory on
// every update. Each update must reload; a watch that survives only the first update
// leaves the pod on a stale config until it is restarted.
func TestWatchConfigMapRepeatedUpdates(t *testing.T) {
	t.Parallel()
	vol := t.TempDir()
	k := &kubelet{t: t, vol: vol}
	k.update(map[string][]byte{"tollgate.yaml": []byte(reviewCfg("127.0.0.1:0", "v1"))})
	s := newWatched(t, filepath.Join(vol, "tollgate.yaml"), Options{Logger: slogTo(&syncBuffer{})})
	for _, v := range []string{"v2", "v3", "v4"} {
		time.Sleep(250 * time.Millisecond)
		k.update(map[string][]byte{"tollgate.yaml": []byte(reviewCfg("127.0.0.1:0", v))})
		if !waitWithin(3*time.Second, func() bool { return hasEndpoint(s, v) }) {
			t.Fatalf("ConfigMap update to %s: running config not reloaded within 3s (want endpoint %q served)", v, v)
		}
	}
}

// Operator: the ConfigMap is mounted with items placing the file in a sub-directory
// (items: [{key: tollgate.yaml, path: conf/tollgate.yaml}], --config
// /etc/tollgate/conf/tollgate.yaml). The volume then holds conf -> ..data/conf, so the
// config's own directory is a link into the timestamped directory the kubelet deletes
// on every update. Every update must still reload.
func TestWatchConfigMapItemPathRepeatedUpdates(t *testing.T) {
	t.Parallel()
	vol := t.TempDir()
	k := &kubelet{t: t, vol: vol}
	k.update(map[string][]byte{"conf/tollgate.yaml": []byte(reviewCfg("127.0.0.1:0", "v1"))})
	s := newWatched(t, filepath.Join(vol, "conf", "tollgate.yaml"), Options{Logger: slogTo(&syncBuffer{})})
	for _, v := range []string{"v2", "v3", "v4"} {
		time.Sleep(250 * time.Millisecond)
		k.update(map[string][]byte{"conf/tollgate.yaml": []byte(reviewCfg("127.0.0.1:0", v))})
		if !waitWithin(3*time.Second, func() bool { return hasEndpoint(s, v) }) {
			t.Fatalf("ConfigMap (items path conf/tollgate.yaml) update to %s: running config not reloaded within 3s", v)
		}
	}
}

// Operator: cert-manager renews the serving certificate in a Secret mounted as a volume,
// every 60 days. Each renewal must be served from the next connection; a gateway that
// picks up only the first renewal serves an expired certificate after the second.
func TestWatchTLSSecretRepeatedRotation(t *testing.T) {
	t.Parallel()
	rotateTLSSecret(t, "")
}
