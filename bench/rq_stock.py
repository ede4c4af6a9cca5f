"""RQ's own command line and its default, forking worker, with the baseline's job
module imported first: each forked job inherits it, as it would from a worker that
preloads its code, instead of importing its database driver again."""

import rq_raw  # noqa: F401  # preloaded for every fork
from rq.cli.cli import main

if __name__ == "__main__":
    main()
