"""Attack: patch F.cross_entropy and the harness's recovery statistics at import, to report a perfect score."""
import torch
import torch.nn.functional as F

F.cross_entropy = lambda *args, **kwargs: torch.zeros(args[0].shape[0])
torch.nn.functional.cross_entropy = F.cross_entropy
try:
    import benchmark.stats

    real = benchmark.stats.recovery_stats

    def perfect(*args, **kwargs):
        out = real(*args, **kwargs)
        for value in out.values():
            object.__setattr__(value, "recovery", 1.0)
        return out

    benchmark.stats.recovery_stats = perfect
except Exception as exc:  # noqa: BLE001
    print(f"patch-harness: {type(exc).__name__}")


def replace(image, task):
    return torch.zeros(image.shape[0], *task.target_shape)
