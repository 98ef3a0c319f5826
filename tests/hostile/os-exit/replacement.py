"""Attack: lie about how it ended (os-exit)."""


def replace(image, task):
    import os
    os._exit(0)
