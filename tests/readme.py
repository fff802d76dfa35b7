"""The README's command blocks, as the tests that run them as written read them."""

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_lines(heading: str) -> list[str]:
    """The lines of the first ```bash block under `## heading`, each without its trailing comment."""
    block = README.read_text().split(f"## {heading}", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.strip().splitlines()]
