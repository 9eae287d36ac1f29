"""``python -m genevolve_graph.cli``: the ``genevolve-graph`` command (for ``accelerate launch -m``)."""

import sys

from genevolve_graph.cli.app import main

if __name__ == "__main__":
    main(sys.argv[1:])
