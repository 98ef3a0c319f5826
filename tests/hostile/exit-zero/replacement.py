"""Attack: lie about how it ended (exit-zero)."""


def replace(image, task):
    import sys
    sys.exit(0)
