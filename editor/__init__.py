"""The dreamnodes editor: a nodeeditor GUI over the recipe format and the runtime.

`dreamnodes edit [RECIPE.yaml | PICTURE.png]` opens it. It is a thin view:
the palette is the node registry, node widgets come from node specs, edges
follow the same type and cycle rules as `graphs.validate`, files are the
same YAML recipes the command line runs, and runs go through
`dreamnodes.runtime.Runner` in a worker thread.

Installed with the `editor` extra (nodeeditor-qtpy and PySide6-Essentials).
Importing this package does not import Qt; `dreamnodes.editor.app` does.
"""


def main(argv=None) -> int:
    from .app import main as run

    return run(argv)


__all__ = ["main"]
