"""What the scripts share: every command-line option defined once with its adapters to the library's arguments, the
one way a script ends on a user's mistake, running a script's command as a user would, and `main.py --quickstart`."""
