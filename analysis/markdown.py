"""Markdown tables, as the run analysis (confusion.md) and the report write them."""


def markdown_table(header: list[str], lines: list[list]) -> list[str]:
    """A markdown table's lines; ``|`` and newlines inside cells are escaped."""
    esc = [[str(c).replace("|", "\\|").replace("\n", " ") for c in line] for line in lines]
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(c) + " |" for c in esc]
