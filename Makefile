.PHONY: test run build bench fuzz

# test runs every check (installs redis-server, promtool, nginx when missing).
test:
	./scripts/test.sh

run:
	go run ./cmd/tollgate

build:
	go build -o bin/tollgate ./cmd/tollgate
	go build -o bin/mockllm ./cmd/mockllm

bench:
	go run ./bench --scenario chat

# fuzz runs each fuzzer for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	go test ./internal/jsonscan -run '^$$' -fuzz FuzzValid -fuzztime $(FUZZTIME)
	go test ./internal/jsonscan -run '^$$' -fuzz FuzzIter -fuzztime $(FUZZTIME)
	go test ./gateway -run '^$$' -fuzz FuzzScanBody -fuzztime $(FUZZTIME)
	go test ./gateway -run '^$$' -fuzz FuzzParseConfig -fuzztime $(FUZZTIME)
	go test ./providers -run '^$$' -fuzz FuzzSSE -fuzztime $(FUZZTIME)
