"""akira's Hydra plugins: the `gpu_pool` launcher (`hydra/launcher=gpu_pool`) and the `study` sweeper
(`hydra/sweeper=study`, used by `experiment=sweep_ablations`). The work is done in `akira.launch`."""
