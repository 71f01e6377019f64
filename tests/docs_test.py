"""The documentation's links, checked on its source: every relative link in the README, docs/ and
the committed results' Markdown names a file of the repository, and every ``#anchor`` names a
heading of the page it points to (GitHub's anchors: the heading lower-cased, punctuation dropped,
spaces as hyphens).  Pages move (the README's record went to docs/generator.md); a link left
pointing at the old place fails here, not in a reader's browser.
"""

import os
import re

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def pages() -> list[str]:
  """The Markdown pages a reader follows links through, relative to the repository's root."""
  found = ["README.md"]
  for top in ("docs", "results"):
    for folder, _, names in os.walk(os.path.join(ROOT, top)):
      found += [os.path.relpath(os.path.join(folder, n), ROOT) for n in names if n.endswith(".md")]
  return sorted(found)


def anchor(heading: str) -> str:
  """GitHub's anchor of a Markdown heading's text."""
  text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
  return text.replace(" ", "-")


def headings(path: str) -> set[str]:
  with open(path, encoding="utf-8") as f:
    return {anchor(line.lstrip("#")) for line in f if line.startswith("#")}


def broken_links(page: str) -> list[str]:
  """The links of ``page`` (relative to the root) that name no file or no heading there."""
  with open(os.path.join(ROOT, page), encoding="utf-8") as f:
    text = f.read()
  broken = []
  for target in LINK.findall(text):
    if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: are not checked here
      continue
    path, _, fragment = target.partition("#")
    resolved = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) if path else \
        os.path.join(ROOT, page)
    if not os.path.exists(resolved):
      broken.append(f"{target} (no such file)")
    elif fragment and os.path.isfile(resolved) and resolved.endswith(".md") \
        and fragment not in headings(resolved):
      broken.append(f"{target} (no such heading)")
  return broken


def test_the_pages_are_found():
  listed = pages()
  assert "README.md" in listed and "docs/method.md" in listed and "results/README.md" in listed


def test_every_relative_link_resolves():
  broken = {page: links for page in pages() if (links := broken_links(page))}
  assert broken == {}


def test_a_broken_link_is_found(tmp_path, monkeypatch):
  (tmp_path / "docs").mkdir()
  (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Its part two\n")
  (tmp_path / "README.md").write_text(
      "[ok](docs/a.md) [part](docs/a.md#its-part-two) [web](https://example.org/x)\n"
      "[gone](docs/b.md) [no part](docs/a.md#part-three)\n")
  monkeypatch.setattr(f"{__name__}.ROOT", str(tmp_path))
  assert broken_links("README.md") == ["docs/b.md (no such file)",
                                        "docs/a.md#part-three (no such heading)"]
