import sys

from distregistry.cli import main

sys.exit(main())
