"""What wraps a training run around main.py's method: its guards (one-line errors, output checks,
the run's lock), the non-finite-loss policy of its step, evaluation and the choice of the best
epoch, the ignite handlers it attaches (records, resume, logs), and training on several
processes as on one."""
