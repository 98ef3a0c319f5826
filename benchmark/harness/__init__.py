"""The harness: a task's context, the batch loop, the baseline, scoring a submission in its sandbox, records' figures, the held-out split and the Ray cluster."""
