"""``genevolve_graph.registry``: the public path of ``genevolve_graph.core.registry``.

The module lives in ``core/`` (docs/architecture.md); this path stays for plugin authors
(docs/extending.md). It is the same module object, not a copy, so attributes set on one are
seen through the other.
"""

import sys

from genevolve_graph.core import registry as _module

sys.modules[__name__] = _module
