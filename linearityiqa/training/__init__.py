"""What wraps a training run around main.py's method: guards, handlers, resume states, several processes."""
