"""RQ's own command line (`rq worker-pool`), with the baseline's job module imported
first: each worker inherits it, as from a worker that preloads its code, instead of
importing its database driver again for every job."""

import rq_raw  # noqa: F401  # preloaded for every worker
from rq.cli.cli import main

if __name__ == "__main__":
    main()
