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
	go test ./internal/jsonscan -run '^$$' -fuzz '^FuzzValid$$' -fuzztime $(FUZZTIME)
	go test ./internal/jsonscan -run '^$$' -fuzz '^FuzzIter$$' -fuzztime $(FUZZTIME)
	go test ./gateway -run '^$$' -fuzz '^FuzzScanBody$$' -fuzztime $(FUZZTIME)
	go test ./gateway -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME)
	go test ./gateway -run '^$$' -fuzz '^FuzzAccessLine$$' -fuzztime $(FUZZTIME)
	go test ./providers -run '^$$' -fuzz '^FuzzSSE$$' -fuzztime $(FUZZTIME)
	go test ./providers -run '^$$' -fuzz '^FuzzAnthropicRequest$$' -fuzztime $(FUZZTIME)
	go test ./providers -run '^$$' -fuzz '^FuzzAnthropicResponse$$' -fuzztime $(FUZZTIME)
	go test ./providers -run '^$$' -fuzz '^FuzzAnthropicStream$$' -fuzztime $(FUZZTIME)
	go test ./providers -run '^$$' -fuzz '^FuzzParseVLLM$$' -fuzztime $(FUZZTIME)
	go test ./providers -run '^$$' -fuzz '^FuzzPromptPrefix$$' -fuzztime $(FUZZTIME)
	go test ./providers/mockllm -run '^$$' -fuzz '^FuzzRequest$$' -fuzztime $(FUZZTIME)
	go test ./limiter -run '^$$' -fuzz '^FuzzLimitValidate$$' -fuzztime $(FUZZTIME)
	go test ./limiter -run '^$$' -fuzz '^FuzzConfigValidate$$' -fuzztime $(FUZZTIME)
	go test ./limiter -run '^$$' -fuzz '^FuzzAppendReset$$' -fuzztime $(FUZZTIME)
	go test ./router -run '^$$' -fuzz '^FuzzLayout$$' -fuzztime $(FUZZTIME)
	go test ./router -run '^$$' -fuzz '^FuzzParseRemote$$' -fuzztime $(FUZZTIME)
	go test ./router -run '^$$' -fuzz '^FuzzParseWindow$$' -fuzztime $(FUZZTIME)
	go test ./tracing -run '^$$' -fuzz '^FuzzTraceparent$$' -fuzztime $(FUZZTIME)
	go test ./bench -run '^$$' -fuzz '^FuzzSSEReader$$' -fuzztime $(FUZZTIME)
