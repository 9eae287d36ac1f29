"""``genevolve_graph.state``: the public path of ``genevolve_graph.core.state`` (and the module name
checkpoints record for its models).

The module lives in ``core/`` (docs/architecture.md); this path stays for plugin authors
(docs/extending.md). It is the same module object, not a copy, so attributes set on one are
seen through the other.
"""

import sys

from genevolve_graph.core import state as _module

sys.modules[__name__] = _module
