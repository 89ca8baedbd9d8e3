"""`python -m edgekws` — the same CLI as the `edgekws` console script."""

from edgekws.cli import main

if __name__ == "__main__":
    main()
