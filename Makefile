# The README's commands. `make run` serves on 127.0.0.1:9999; `make test` runs everything CI runs.
.PHONY: run build test deps bench fuzz

deps:
	scripts/install-deps

build: deps
	go build -o bin/sstemu ./cmd/sstemu

run: build
	bin/sstemu serve

test:
	scripts/test

bench:
	scripts/bench

fuzz:
	scripts/fuzz
