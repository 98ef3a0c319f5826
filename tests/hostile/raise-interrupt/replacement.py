"""Attack: lie about how it ended (raise-interrupt)."""


def replace(image, task):
    raise KeyboardInterrupt
