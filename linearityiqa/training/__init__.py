"""A training run: the training step, evaluation and the choice of the best epoch, the ignite
handlers that a run attaches to its trainer, and training on several processes as on one."""
