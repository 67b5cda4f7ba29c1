"""mkdocs hook: the site shows cluster/README.md (which stays beside the configs it describes)
as the page cluster/launchers.md. That page holds one marker line; the hook puts the README in
its place, its links into docs/ (`../docs/PAGE.md`, written for the repository) rewritten for
the site (`../PAGE.md`), before mkdocs checks them.
"""

from pathlib import Path

MARKER = '--8<-- "cluster/README.md"'


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace the marker with cluster/README.md, its links pointed at the site's pages."""
    if MARKER not in markdown:
        return markdown
    readme = Path(config["config_file_path"]).parent / "cluster" / "README.md"
    text = readme.read_text(encoding="utf-8").replace("](../docs/", "](../")
    return markdown.replace(MARKER, text)
