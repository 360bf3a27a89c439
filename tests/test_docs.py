"""The documentation a newcomer reads: a README read in ten minutes, and links that lead somewhere inside the
repository (a clone has nothing beside it)."""

from __future__ import annotations

import re

import pytest
from helpers import REPO

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_the_readme_is_read_in_ten_minutes():
    assert len((REPO / "README.md").read_text().splitlines()) <= 300


@pytest.mark.parametrize("document", DOCUMENTS, ids=[str(d.relative_to(REPO)) for d in DOCUMENTS])
def test_every_relative_link_resolves_inside_the_repository(document):
    text = document.read_text()
    for target in LINK.findall(text):
        if re.match(r"[a-z]+://|mailto:", target):
            continue  # the web: not ours to check here
        path = (document.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(REPO.resolve()), f"{document.name} links outside the repository: {target}"
        assert path.exists(), f"{document.name} links to {target}, which does not exist"
    assert "../shared" not in text, f"{document.name} points outside the repository"


def test_every_document_in_docs_is_reachable_from_the_readme():
    linked, todo = set(), [REPO / "README.md"]
    while todo:
        document = todo.pop()
        for target in LINK.findall(document.read_text()):
            path = (document.parent / target.split("#")[0]).resolve()
            if path.suffix == ".md" and path.exists() and path not in linked:
                linked.add(path)
                todo.append(path)
    assert {d.resolve() for d in DOCUMENTS[1:]} <= linked
