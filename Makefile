.PHONY: test run build bench fuzz cross

# test runs every check (installs redis-server, promtool, nginx when missing).
test:
	./scripts/test.sh

run:
	go run ./cmd/tollgate

# -buildvcs=auto: the binary records the checkout's commit (tollgate version prints
# it), even where GOFLAGS turns that off.
build:
	go build -buildvcs=auto -o bin/tollgate ./cmd/tollgate
	go build -buildvcs=auto -o bin/mockllm ./cmd/mockllm

bench:
	go run ./bench --scenario chat

# fuzz runs every fuzz target of every package (found with go test -list) for FUZZTIME
# each (default 30s).
FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in $$(go list ./...); do \
		for f in $$(go test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; \
			go test $$pkg -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME); \
		done; \
	done

# cross checks that everything builds and vets for macOS and FreeBSD (developers'
# machines), and that the gateway and mockllm build for Windows.
cross:
	GOOS=darwin go vet ./...
	GOOS=freebsd go vet ./...
	GOOS=windows go build ./cmd/...
