import sys

from mspn.cli import main

sys.exit(main())
