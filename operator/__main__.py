"""``konsul-operator``: run the operator (filled in by the operator module)."""

from __future__ import annotations


def main() -> None:
    raise SystemExit("konsul-operator: not built yet")


if __name__ == "__main__":
    main()
