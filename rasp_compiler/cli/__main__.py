"""`python -m rasp_compiler.cli`: the command line without the installed script."""

import sys

from rasp_compiler.cli.parser import main

sys.exit(main())
