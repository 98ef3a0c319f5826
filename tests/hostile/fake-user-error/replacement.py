"""Attack: lie about how it ended (fake-user-error)."""


def replace(image, task):
    from benchmark.errors import UserError
    raise UserError("the harness is broken, not this submission")
