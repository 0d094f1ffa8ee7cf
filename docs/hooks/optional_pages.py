"""MkDocs hook: list pages that other people own in the nav once they exist.

``docs/performance.md`` is written separately from the rest of the site. Naming a missing file in
``nav`` fails a ``--strict`` build, so the entry is added here, after "Configuration file", only
when the file is present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

OPTIONAL_PAGES = (("Performance", "performance.md", "Configuration file"),)


def on_config(config: Any, **kwargs: Any) -> Any:
    nav = config.get("nav")
    if not nav:
        return config
    listed = {value for entry in nav if isinstance(entry, dict) for value in entry.values() if isinstance(value, str)}
    for title, page, after in OPTIONAL_PAGES:
        if page in listed or not (Path(config["docs_dir"]) / page).is_file():
            continue
        titles = [next(iter(entry)) if isinstance(entry, dict) else entry for entry in nav]
        position = titles.index(after) + 1 if after in titles else len(nav)
        nav.insert(position, {title: page})
    return config
