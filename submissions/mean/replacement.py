"""The mean baseline: each unit's fit-set mean activation, per spatial position.

`fit` stores mean[u, ...] = (1/N) Σ_n target[n, u, ...]; `replace` broadcasts it
over the batch. It equals the harness's mean ablation, so it recovers ≈0% of the
mean-ablation loss; against zero ablation it shows how much a constant explains.
"""



def fit(target):
    return {"mean": target.mean(dim=0)}  # [n_units, ...]


def replace(params, task, **inputs):
    batch = next(iter(inputs.values())).shape[0]
    mean = params["mean"]
    return mean.unsqueeze(0).expand(batch, *task.target_shape).contiguous()
