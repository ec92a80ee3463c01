"""Splice the Markdown results of benchmarks/results/ into README.md between markers.

<!-- results:NAME -->  ...generated from benchmarks/results/NAME.md...  <!-- /results -->
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a body never spans another opening marker, so a missing closing marker cannot swallow a section
MARKER = re.compile(r"(<!-- results:(?P<name>[\w-]+) -->\n)(?P<body>(?:(?!<!-- results:).)*?)(<!-- /results -->)", re.S)


def splice(text: str, results: Path) -> str:
    def fill(m: re.Match) -> str:
        src = results / f"{m['name']}.md"
        if not src.is_file():
            raise SystemExit(f"{src} is missing: run the benchmark that writes it")
        body = src.read_text().strip()
        body = re.sub(r"^# .*\n+", "", body)  # the file's own title
        return f"{m.group(1)}{body}\n{m.group(4)}"

    return MARKER.sub(fill, text)


def main() -> int:
    readme = ROOT / "README.md"
    new = splice(readme.read_text(), ROOT / "benchmarks" / "results")
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
