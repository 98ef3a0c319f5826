"""Attack: run forever."""


def replace(image, task):
    while True:
        pass
