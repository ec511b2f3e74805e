"""The agent, whose Sage Pro data folder vanishes in the middle of a receipt:
`python vanishing_agent.py <data folder> relay run …`.

It installs a fixture-store fault hook that renames the data folder to
`<folder>.away` right after the receipt lines are written and indexed (ARCAPP's CDX
renamed into place, step S3), as a file server dropping off the network between two
writes would, then runs `python -m sagepro_agent` with the remaining arguments.
"""

import os
import sys

from sagepro_agent.__main__ import main
from sagepro_agent.store.fixture import faults

FOLDER = sys.argv[1]
done = []


def vanish(point: str, table: str) -> None:
    if point == "cdx:renamed" and table.upper().startswith("ARCAPP") and not done:
        done.append(point)
        os.rename(FOLDER, FOLDER + ".away")


if __name__ == "__main__":
    faults.FAULT = vanish
    sys.exit(main(sys.argv[2:]))
