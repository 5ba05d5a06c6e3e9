"""The generated references in docs/ match the definitions they are generated from."""

from pathlib import Path

import pytest
from amaranth.lib import data

from systolic.csr import csr_markdown
from systolic.isa import LAYOUTS, Opcode, isa_markdown

DOCS = Path(__file__).resolve().parent.parent / "docs"

GENERATED = {
    "isa.md": isa_markdown,
    "csr.md": csr_markdown,
}


def stale_message(name):
    return (f"docs/{name} is stale: it no longer matches the definitions it is generated "
            f"from. Run `make docs` and commit the result.")


def check_fresh(path, generate):
    """Raise AssertionError with the `make docs` hint when ``path`` differs from ``generate()``."""
    name = path.name
    assert path.exists(), f"docs/{name} is missing. Run `make docs` and commit the result."
    assert path.read_text(encoding="utf-8") == generate(), stale_message(name)


@pytest.mark.parametrize("name", GENERATED)
def test_generated_doc_is_current(name):
    check_fresh(DOCS / name, GENERATED[name])


def test_stale_doc_is_caught_with_the_make_docs_hint(tmp_path):
    path = tmp_path / "isa.md"
    path.write_text(isa_markdown().replace("| `LOAD` | 2 |", "| `LOAD` | 9 |"),
                    encoding="utf-8")
    with pytest.raises(AssertionError, match=r"docs/isa\.md is stale.*Run `make docs`"):
        check_fresh(path, isa_markdown)
    with pytest.raises(AssertionError, match=r"docs/csr\.md is missing\. Run `make docs`"):
        check_fresh(tmp_path / "csr.md", csr_markdown)


def test_isa_reference_documents_every_opcode_and_field():
    text = isa_markdown()
    for op in Opcode:
        assert f"## {op.name}\n" in text
        assert f"| `{op.name}` | {op.value} |" in text
        for name, field in data.Layout.cast(LAYOUTS[op]):
            if name == "header":
                continue
            lsb, msb = field.offset, field.offset + field.width - 1
            bits = f"{lsb}" if field.width == 1 else f"{msb}:{lsb}"
            assert f"| {bits} | `{name}` |" in text, (op.name, name)
