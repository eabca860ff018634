package main

import "runtime/debug"

// versionOf is what `tollgate version` prints: set, the version given at build time
// (-ldflags "-X main.version=…"); else the module version the build recorded (`go
// install …@v1.2.3`, or for a build in a git checkout the pseudo-version of its commit,
// v0.0.0-TIME-COMMIT, +dirty with changes); else, where only the commit was recorded,
// "dev+" and the commit (12 hex digits), with "-dirty" when the checkout had changes;
// else "dev" (`go run`, which records no commit, or a build outside git or with
// -buildvcs=false).
func versionOf(set string, bi *debug.BuildInfo, ok bool) string {
	if set != "" && set != "dev" || !ok || bi == nil {
		return set
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return set
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	out := "dev+" + rev
	if modified == "true" {
		out += "-dirty"
	}
	return out
}

// buildVersion is versionOf this binary.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	return versionOf(version, bi, ok)
}
