bench:
	python3 -m benchmarks

bench-quick:
	python3 -m benchmarks --quick
