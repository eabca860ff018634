package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestVersionOf(t *testing.T) {
	vcs := func(rev, modified string) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}}
	}
	for _, c := range []struct {
		name, set string
		bi        *debug.BuildInfo
		ok        bool
		want      string
	}{
		{"set with ldflags", "1.4.0", vcs("0123456789abcdef0123", "false"), true, "1.4.0"},
		{"go install at a version", "dev", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, true, "v1.4.0"},
		{"git checkout", "dev", vcs("0123456789abcdef0123", "false"), true, "dev+0123456789ab"},
		{"git checkout with changes", "dev", vcs("0123456789abcdef0123", "true"), true, "dev+0123456789ab-dirty"},
		{"changes, no module version", "", &debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}}, true, "dev+0123456789ab-dirty"},
		{"go run, no commit recorded", "dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true, "dev"},
		{"no build info", "dev", nil, false, "dev"},
	} {
		if got := VersionOf(c.set, c.bi, c.ok); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// The version given at link time, once the command has said so, is every reader's.
func TestVersionGiven(t *testing.T) {
	SetGiven("2.0.1")
	defer SetGiven("dev")
	if got := Version(); got != "2.0.1" {
		t.Errorf("Version() = %q after SetGiven(2.0.1)", got)
	}
}
