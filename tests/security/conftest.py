"""One ``langgraph dev`` for the hostile tests of served graphs (startup is slow; the tests share it).

The server runs as ``make studio`` runs it (``langgraph.studio.json``: the SQLite trace
checkpointer), from a folder of the test's own that stands for the operator's project: it
holds a ``README.md`` and a ``genevolve_graph/server.py`` that a hostile caller would like to
replace. The operator sets nothing else, so the default roots apply (the working directory
and the cache, which holds the trace database and the default renders folder).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from ..studio.dev_server import DevServer, langgraph_dev

ROOT = Path(__file__).resolve().parents[2]
PROJECT_FILES = {"README.md": "# the operator's project\n", "genevolve_graph/server.py": "# the served graph's source\n"}


@dataclass
class ServedProject:
    server: DevServer
    project: Path
    cache: Path

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def renders(self) -> Path:
        return self.cache / "genevolve-graph" / "renders"

    @property
    def trace_db(self) -> Path:
        return self.cache / "genevolve-graph" / "traces.sqlite"

    def snapshot(self) -> dict[str, bytes]:
        """Every file of the project and of the cache but the trace database's own (which
        the server writes as it records runs), with their bytes."""
        found = {}
        for base in (self.project, self.cache):
            for path in sorted(base.rglob("*")):
                if path.is_file() and ".langgraph_api" not in path.parts and not path.name.startswith("traces.sqlite"):
                    found[str(path)] = path.read_bytes()
        return found


def project_config(folder: Path) -> Path:
    """langgraph.studio.json with this checkout's absolute paths, written into ``folder``."""
    config = json.loads((ROOT / "langgraph.studio.json").read_text())
    config["dependencies"] = [str(ROOT)]
    config["graphs"] = {name: str(ROOT / spec.removeprefix("./")) for name, spec in config["graphs"].items()}
    config["checkpointer"]["path"] = str(ROOT / config["checkpointer"]["path"].removeprefix("./"))
    path = folder / "langgraph.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture(scope="session")
def served_project(tmp_path_factory) -> Iterator[ServedProject]:
    pytest.importorskip("langgraph_api", reason="served-graph tests need the studio extra: pip install 'genevolve-graph[studio]'")
    base = tmp_path_factory.mktemp("served")
    project, cache = base / "project", base / "cache"
    for name, text in PROJECT_FILES.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    project_config(project)
    drop = ("GENEVOLVE_BASE_URL", "OPENAI_BASE_URL", "GENEVOLVE_MODEL", "GENEVOLVE_TRACE_DB", "GENEVOLVE_ALLOWED_ROOTS",
            "GENEVOLVE_RENDERS_DIR", "GENEVOLVE_ALLOWED_ORIGINS", "CORS_CONFIG")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(HF_HUB_OFFLINE="1", LANGSMITH_TRACING="false", LANGGRAPH_CLI_NO_ANALYTICS="1", XDG_CACHE_HOME=str(cache),
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p))
    with langgraph_dev(project, base / "dev.log", env, timeout=120) as server:
        yield ServedProject(server, project, cache)
