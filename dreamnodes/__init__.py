"""dreamnodes: node-based neural-network image hallucination.

This root package holds the shared vocabulary every layer uses: socket types
(`types`), node specs (`spec`), the `@node` decorator and the registry
(`registry`), resource limits (`limits`), input files (`inputs`), the run
`Context`, events and errors. Nodes live in `dreamnodes.nodes`, the recipe format in
`dreamnodes.graphs`, execution in `dreamnodes.runtime`, the GUI in
`dreamnodes.editor`. Dependencies point one way: editor -> runtime -> graphs
-> this vocabulary.
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("dreamnodes")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

from .context import Context  # noqa: E402
from .errors import Cancelled, DreamError, NodeError, Problem, RecipeError, UsageError  # noqa: E402
from .registry import node  # noqa: E402
from .spec import Color, Doc, InPath, OutPath, Range  # noqa: E402

__all__ = ["Context", "Cancelled", "DreamError", "NodeError", "Problem", "RecipeError", "UsageError",
           "Color", "Doc", "InPath", "OutPath", "Range", "node", "__version__"]
