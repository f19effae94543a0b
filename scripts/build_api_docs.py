#!/usr/bin/env python3
"""Build the HTML reference of the library interface (restique.api and its error classes)
from the docstrings, with pdoc: `python scripts/build_api_docs.py [OUTPUT_FOLDER]`
(default docs/api). Only the public modules are documented, so the pages stay small."""
import argparse
import pathlib
import sys

PUBLIC_MODULES = ["restique.api", "restique.errors"]
DEFAULT_OUTPUT = pathlib.Path(__file__).resolve().parent.parent / "docs" / "api"


def build(output: pathlib.Path) -> list:
    """Write the pages into output; returns the files written."""
    import pdoc
    import pdoc.render

    pdoc.render.configure(docformat="markdown", show_source=False,
                          footer_text="restique library reference", search=False)
    output.mkdir(parents=True, exist_ok=True)
    pdoc.pdoc(*PUBLIC_MODULES, output_directory=output)
    return sorted(p for p in output.rglob("*") if p.is_file())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", type=pathlib.Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    for path in build(args.output):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
