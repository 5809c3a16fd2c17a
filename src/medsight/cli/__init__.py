"""The `medsight` command line: parse arguments, call the library, show progress and results.

One module per command group; importing it registers its commands on `medsight.cli.app.app`.
A new group is a module here plus one `import medsight.cli.<name>` line below.
"""

import medsight.cli.accounts
import medsight.cli.activate
import medsight.cli.bundle
import medsight.cli.cache
import medsight.cli.data
import medsight.cli.datasets
import medsight.cli.demo
import medsight.cli.info
import medsight.cli.local_app
import medsight.cli.models
import medsight.cli.pacs
import medsight.cli.pacs_watch
import medsight.cli.predict
import medsight.cli.preprocess
import medsight.cli.serve
import medsight.cli.train  # noqa: F401  (the imports above register their commands)
from medsight.cli.app import app, main

__all__ = ["app", "main"]
