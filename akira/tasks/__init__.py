"""LightningModules (thin): NextFrameTask, LanguageModelTask; optim.py holds param groups/schedules."""
