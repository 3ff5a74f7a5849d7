"""Write FILE.gz next to each FILE given: what the api serves to browsers that accept gzip.

With the `zopfli` module (PyPI; scripts/build-web.sh installs it into a venv) the streams are
zopfli's: ordinary gzip that any browser reads, 4-5 % smaller than `gzip -9`; without it,
Python's gzip at level 9. Deterministic either way (no name, mtime 0).

    python3 scripts/precompress.py FILE...
"""

import gzip
import sys

try:
    import zopfli.gzip as zgzip
except ImportError:  # pragma: no cover - the fallback is plain gzip
    zgzip = None


def compress(data: bytes) -> bytes:
    if zgzip is not None:
        # No cap on the number of deflate blocks (zopfli's default is 15): on the inference
        # module that is 8.5 KB (0.5 %) smaller, for about 20 s more (BENCHMARKS.md). 15
        # iterations (zopfli's default) rather than 5: 0.7 KB smaller, about 2 s more.
        return zgzip.compress(data, numiterations=15, blocksplittingmax=0)
    return gzip.compress(data, compresslevel=9, mtime=0)


def main() -> None:
    for path in sys.argv[1:]:
        with open(path, "rb") as f:
            data = f.read()
        out = compress(data)
        if gzip.decompress(out) != data:
            raise SystemExit(f"precompress: {path}: the stream does not round-trip")
        with open(path + ".gz", "wb") as f:
            f.write(out)
    print(f"precompress: {len(sys.argv) - 1} files ({'zopfli' if zgzip else 'gzip -9'})")


if __name__ == "__main__":
    main()
