"""The autobatch command line: a thin typer layer over the autobatch library."""

import time

# When this process started, so `--timeout` counts the start-up (imports, data) too.
STARTED = time.time()
