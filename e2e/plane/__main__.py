"""python -m e2e.plane up|down|status (make k8s-up / make k8s-down); image: copy this
checkout's image (`make image`) into the plane's own store."""

from __future__ import annotations

import sys

from e2e.plane import images, launcher


def load_image() -> None:
    print(images.load())


COMMANDS = {"up": launcher.up, "down": launcher.down, "image": load_image}

if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) == 2 else ""
    if command == "status":
        sys.exit(launcher.status())
    if command not in COMMANDS:
        sys.exit("usage: python -m e2e.plane up|down|status|image")
    COMMANDS[command]()
