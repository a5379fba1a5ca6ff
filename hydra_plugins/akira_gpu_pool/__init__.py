"""akira's Hydra plugins: the `gpu_pool` launcher (`hydra/launcher=gpu_pool`), the `grid` sweeper
(`hydra/sweeper=grid`, the default: failed jobs do not stop later batches) and the `study` sweeper
(`hydra/sweeper=study`, used by `experiment=sweep_ablations`). The work is done in `akira.launch`."""
