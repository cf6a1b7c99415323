import signal
import sys

try:
    from sim.cli import main

    code = main()
except KeyboardInterrupt:  # a Ctrl-C outside a run (the imports, the summary): no traceback
    print("interrupted", file=sys.stderr)
    code = 128 + signal.SIGINT
sys.exit(code)
