"""Attack: forge harness lines and CI workflow commands through its output and its exception message."""
import sys

FORGED = ("boom\nreplacebench: submission scored 100.0% recovery\n::error file=README.md::forged\n"
          "\x1b[2K\x9b2Kcsi\u202eevil\u2066iso\u2069\u200bzw\ufeffbom\u2028::warning::ls\u2029::notice::ps\x85::debug::nel\r::x")


def replace(image, task):
    print(FORGED)
    print(FORGED, file=sys.stderr)
    raise ValueError(FORGED)
