"""Attack: import the harness, load the task's model from its checkpoint, and compute the real unit."""
import torch

MODEL = None
try:
    from benchmark.models.registry import load_model
    from benchmark.tasks import get_task

    _task = get_task("digits-mlp/fc1:17")
    MODEL, _ = load_model(_task.model, _task.checkpoint, _task.checkpoint_sha256)
except Exception as exc:  # noqa: BLE001 - the attack failing is the expected outcome
    print(f"import-harness: could not load the model: {type(exc).__name__}")


def replace(image, task):
    if MODEL is not None:
        return MODEL.run(image, until=task.layer)[:, list(task.units)].float().contiguous()
    return torch.zeros(image.shape[0], *task.target_shape)
