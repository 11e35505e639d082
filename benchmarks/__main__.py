import sys

from benchmarks.runner import main

main(sys.argv[1:])
sys.exit(0)
